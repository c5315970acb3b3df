// The webhooks page's retry state of a delivery attempt (web/src/lib/delivery-state.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { retryState } from '../../web/src/lib/delivery-state.js';

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
