// The webhooks page's retry state of a delivery attempt (web/src/lib/delivery-state.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nextRefreshIn, retryState } from '../../web/src/lib/delivery-state.js';

test("a delivery attempt's retry state: delivered, gave up, next try scheduled or due, or retried", () => {
  const now = Date.parse('2026-01-01T10:00:00Z');
  assert.deepEqual(retryState({ succeeded: true, gaveUp: false, nextRetryAt: null }, now), { kind: 'delivered', at: null });
  assert.deepEqual(retryState({ succeeded: false, gaveUp: true, nextRetryAt: null }, now), { kind: 'gave-up', at: null });
  assert.deepEqual(retryState({ succeeded: false, gaveUp: false, nextRetryAt: '2026-01-01T10:00:04Z' }, now), {
    kind: 'scheduled',
    at: now + 4000,
  });
  assert.deepEqual(retryState({ succeeded: false, gaveUp: false, nextRetryAt: '2026-01-01T09:59:59Z' }, now), {
    kind: 'due',
    at: now - 1000,
  });
  assert.deepEqual(retryState({ succeeded: false, gaveUp: false, nextRetryAt: null }, now), { kind: 'retried', at: null });
});

test('the log is read again a second after the earliest queued retry is due, within 2 to 30 s; not at all when none waits', () => {
  const now = Date.parse('2026-01-01T10:00:00Z');
  const waiting = (iso: string) => ({ succeeded: false, gaveUp: false, nextRetryAt: iso });
  assert.equal(nextRefreshIn([], now), null);
  assert.equal(nextRefreshIn([{ succeeded: true, gaveUp: false, nextRetryAt: null }, { succeeded: false, gaveUp: true, nextRetryAt: null }], now), null);
  assert.equal(nextRefreshIn([waiting('2026-01-01T10:00:09Z'), waiting('2026-01-01T10:00:04Z')], now), 5_000);
  assert.equal(nextRefreshIn([waiting('2026-01-01T09:59:00Z')], now), 2_000, 'due already: soon, not in a tight loop');
  assert.equal(nextRefreshIn([waiting('2026-01-01T11:00:00Z')], now), 30_000);
});
