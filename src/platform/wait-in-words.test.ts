import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitInWords } from './wait-in-words.js';

test('a wait reads as a person says it, rounded up', () => {
  for (const [seconds, words] of [
    [0.2, '1 second'],
    [1, '1 second'],
    [45, '45 seconds'],
    [89, '89 seconds'],
    [90, '2 minutes'],
    [900, '15 minutes'],
    [3540, '59 minutes'],
    [3600, '60 minutes'],
    [7200, '2 hours'],
    [86_400, '24 hours'],
  ] as const) {
    assert.equal(waitInWords(seconds), words, `${seconds} s`);
  }
});
