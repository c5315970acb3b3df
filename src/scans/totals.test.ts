import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { and, count, eq } from 'drizzle-orm';
import { scans } from '../platform/db/schema.js';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { seedScans } from '../bench/seed.js';
import { createTotalsCache, LARGE } from './totals.js';

test('a total up to LARGE is counted exactly every time; a larger one is cached and refreshed in the background', async () => {
  let now = 0;
  const cache = createTotalsCache(() => now);
  let exactCalls = 0;
  const notNeeded = async () => assert.fail('not needed');
  assert.equal(cache.cached('small', notNeeded), undefined);
  assert.equal(await cache.settle('small', 7, notNeeded), 7);
  assert.equal(cache.cached('small', notNeeded), undefined, 'a small total is counted again next time');
  assert.equal(await cache.settle('small', LARGE, notNeeded), LARGE);

  let big = 1_000_000;
  const exact = async () => (exactCalls++, big);
  assert.equal(cache.cached('big', exact), undefined);
  assert.equal(await cache.settle('big', LARGE + 1, exact), 1_000_000);
  big = 1_000_005;
  now += 1_000;
  assert.equal(cache.cached('big', exact), 1_000_000, 'fresh: from memory');
  assert.equal(exactCalls, 1);
  now += 20_000;
  assert.equal(cache.cached('big', exact), 1_000_000, 'stale: old value, refresh started');
  await new Promise((r) => setImmediate(r));
  assert.equal(cache.cached('big', exact), 1_000_005);
  assert.equal(exactCalls, 2);
});

for (const kind of await databaseKinds()) {
  describe(`a list of more than LARGE scans (${kind})`, () => {
    let t: TestApp;
    let doctor: TestUser;
    let other: TestUser;
    const SEEDED = LARGE + 3;

    before(async () => {
      t = await createTestApp(kind);
      [doctor, other] = await Promise.all([t.user(), t.user()]);
      await seedScans(t.database.db, { doctorId: doctor.id, patients: 7, scans: SEEDED, patientPrefix: `${uniqueId('BIG')}-`, batch: 5_000 });
    });
    after(() => t.close());

    const list = async (user: TestUser, query: string) => {
      const res = await t.app.inject({ method: 'GET', url: `/api/scans?${query}`, headers: user.auth });
      assert.equal(res.statusCode, 200, res.body);
      return res.json<{ scans: { _id: string; scanDate: string }[]; totalScans: number; totalPages: number; currentPage: number }>();
    };

    test('shows its exact total on every page, the last page and past the end included', async () => {
      const first = await list(doctor, 'limit=10');
      assert.equal(first.totalScans, SEEDED);
      assert.equal(first.totalPages, Math.ceil(SEEDED / 10));
      assert.equal(first.scans.length, 10);
      const second = await list(doctor, 'limit=10&page=2');
      assert.equal(second.totalScans, SEEDED, 'from memory this time');
      assert.equal(second.scans.length, 10);
      assert.ok(second.scans[0]!.scanDate <= first.scans[9]!.scanDate, 'newest first across pages');
      assert.ok(!first.scans.some((s) => second.scans.some((x) => x._id === s._id)));
      const last = await list(doctor, `limit=10&page=${first.totalPages}`);
      assert.equal(last.scans.length, SEEDED % 10);
      assert.equal(last.totalScans, SEEDED);
      const past = await list(doctor, `limit=10&page=${first.totalPages + 1}`);
      assert.deepEqual([past.scans.length, past.totalScans], [0, SEEDED]);
    });

    test('a narrower list of the same scans is counted exactly; another doctor sees none', async () => {
      const [{ completed }] = (await t.database.db
        .select({ completed: count() })
        .from(scans)
        .where(and(eq(scans.status, 'completed'), eq(scans.doctorId, doctor.id)))) as [{ completed: number }];
      assert.ok(completed > LARGE / 2 && completed <= LARGE, `seeded ${completed} completed scans`);
      assert.equal((await list(doctor, 'limit=10&status=completed')).totalScans, completed);
      const past = await list(doctor, `limit=10&status=completed&page=${Math.ceil(completed / 10) + 1}`);
      assert.deepEqual([past.scans.length, past.totalScans], [0, completed], 'past the end: no row to carry the count');
      assert.deepEqual(await list(other, 'limit=10'), { scans: [], currentPage: 1, totalPages: 0, totalScans: 0 });
    });

    test("the seed's completed scans are listed with their finding, as the benchmarks assume", async () => {
      // Oldest first too: the seed links each batch's scans to their analyses after the loop.
      for (const query of ['limit=50&status=completed', `limit=50&status=completed&page=${Math.ceil(LARGE / 100)}`]) {
        const { scans: page } = (await t.app.inject({ url: `/api/scans?${query}`, headers: doctor.auth })).json<{ scans: { result: { confidence?: number } | null }[] }>();
        assert.ok(page.length > 0, query);
        assert.deepEqual(page.filter((s) => typeof s.result?.confidence !== 'number'), [], `${query}: a completed scan without its finding`);
      }
    });
  });
}
