// What the viewer's review form says when its save is refused because a colleague reviewed the
// finding after the physician opened it (web/src/lib/review-conflict.ts), under node.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ifMatchFor, reviewConflictText } from '../../web/src/lib/review-conflict.js';

const at = (iso: string) => `[${iso}]`;
const mine = { _id: 'review-1', reviewedAt: '2026-12-07T09:00:00.000Z', reviewedBy: { _id: 'me', name: 'Dr. Me' } };
const theirs = { _id: 'review-2', reviewedAt: '2026-12-07T09:05:00.000Z', reviewedBy: { _id: 'colleague', name: 'Dr. Ananya Singh' } };

describe('a review refused because the finding changed', () => {
  test('the If-Match of a finding is its version as an HTTP entity tag', () => {
    assert.equal(ifMatchFor('r.a'), '"r.a"');
  });

  test("names the colleague and the time of their review, and says the physician's input is kept, not saved", () => {
    const text = reviewConflictText({ review: null }, { review: theirs }, { _id: 'me' }, at);
    assert.match(text, /^Dr\. Ananya Singh reviewed this finding at \[2026-12-07T09:05:00\.000Z\], after you opened it/);
    assert.match(text, /Your review was not saved; what you chose and typed is still in the form/);
    assert.match(text, /save again/);
    // After an earlier review of one's own too.
    assert.match(reviewConflictText({ review: mine }, { review: theirs }, { _id: 'me' }, at), /^Dr\. Ananya Singh reviewed/);
  });

  test("one's own review from another tab, a former user's, and a newer analysis are told apart", () => {
    assert.match(reviewConflictText({ review: null }, { review: mine }, { _id: 'me' }, at), /^You \(in another window or tab\) reviewed/);
    assert.match(reviewConflictText({ review: null }, { review: { ...theirs, reviewedBy: null } }, null, at), /^A former user reviewed/);
    assert.match(reviewConflictText({ review: mine }, { review: mine }, { _id: 'me' }, at), /a newer analysis finished/);
  });
});
