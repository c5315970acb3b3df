import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createTotalsCache, LARGE } from './totals.js';

test('a total up to LARGE is counted exactly every time; a larger one is cached and refreshed in the background', async () => {
  let now = 0;
  const cache = createTotalsCache(() => now);
  let exactCalls = 0;
  let small = 7;
  assert.equal(await cache.total('small', async () => small, async () => assert.fail('not needed')), 7);
  small = 8;
  assert.equal(await cache.total('small', async () => small, async () => assert.fail('not needed')), 8);

  let big = 1_000_000;
  const exact = async () => (exactCalls++, big);
  assert.equal(await cache.total('big', async () => LARGE + 1, exact), 1_000_000);
  big = 1_000_005;
  now += 1_000;
  assert.equal(await cache.total('big', async () => assert.fail('cached'), exact), 1_000_000, 'fresh: from memory');
  now += 20_000;
  assert.equal(await cache.total('big', async () => assert.fail('cached'), exact), 1_000_000, 'stale: old value, refresh started');
  await new Promise((r) => setImmediate(r));
  assert.equal(await cache.total('big', async () => assert.fail('cached'), exact), 1_000_005);
  assert.equal(exactCalls, 2);
});
