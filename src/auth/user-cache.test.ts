import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { createTestApp, type TestApp } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { openDatabase, type Database } from '../platform/db/index.js';
import { users } from '../platform/db/schema.js';
import { createUserCache } from './user-cache.js';

/** A listen() whose notifications and connection state the test drives. */
function fakeDatabase() {
  let handlers: { onNotify(p: string): void; onReconnect?(): void; onError?(e: Error): void } | null = null;
  const database: Pick<Database, 'listen'> = {
    async listen(_channel, h) {
      handlers = h;
      return async () => undefined;
    },
  };
  return { database, notify: (id: string) => handlers!.onNotify(id), drop: () => handlers!.onError?.(new Error('gone')), back: () => handlers!.onReconnect?.() };
}

describe('user cache', () => {
  test('serves a user from memory until a change notification evicts it', async () => {
    const fake = fakeDatabase();
    const cache = createUserCache<{ v: number }>(fake.database);
    await cache.start();
    let reads = 0;
    const load = async () => ({ v: ++reads });
    assert.deepEqual(await cache.get('u1', load), { v: 1 });
    assert.deepEqual(await cache.get('u1', load), { v: 1 });
    assert.equal(reads, 1);
    fake.notify('u1');
    assert.deepEqual(await cache.get('u1', load), { v: 2 });
  });

  test('is bypassed before start and while notifications are down, and emptied when they come back', async () => {
    const fake = fakeDatabase();
    const cache = createUserCache<{ v: number }>(fake.database);
    let reads = 0;
    const load = async () => ({ v: ++reads });
    await cache.get('u1', load);
    await cache.get('u1', load);
    assert.equal(reads, 2, 'not started: no caching');
    await cache.start();
    await cache.get('u1', load);
    fake.drop();
    await cache.get('u1', load);
    await cache.get('u1', load);
    assert.equal(reads, 5, 'listener down: every request reads');
    fake.back();
    await cache.get('u1', load);
    await cache.get('u1', load);
    assert.equal(reads, 6);
  });

  test('a read that raced with an eviction is not cached', async () => {
    const fake = fakeDatabase();
    const cache = createUserCache<{ v: number }>(fake.database);
    await cache.start();
    let reads = 0;
    await cache.get('u1', async () => {
      reads++;
      fake.notify('u1'); // the row changed while it was being read
      return { v: 1 };
    });
    await cache.get('u1', async () => ({ v: ++reads }));
    assert.equal(reads, 2);
  });

  test('never caches a missing user', async () => {
    const fake = fakeDatabase();
    const cache = createUserCache<{ v: number }>(fake.database);
    await cache.start();
    let reads = 0;
    await cache.get('gone', async () => (reads++, null));
    await cache.get('gone', async () => (reads++, null));
    assert.equal(reads, 2);
  });
});

for (const kind of await databaseKinds()) {
  describe(`user cache across processes (${kind})`, () => {
    let t: TestApp;
    let other: Database | null = null;
    before(async () => {
      t = await createTestApp(kind);
      // Another process's connection to the same database (PGlite is one process: its own handle).
      if (kind === 'postgres') other = await openDatabase({ databaseUrl: t.database.connectionString, dataDir: null, poolSize: 1 });
    });
    after(async () => {
      await other?.close();
      await t.close();
    });

    test('a user deactivated by another process loses access within moments, though their row was cached', async () => {
      const u = await t.user();
      for (let i = 0; i < 3; i++) assert.equal((await t.app.inject({ url: '/api/auth/me', headers: u.auth })).statusCode, 200);
      await (other ?? t.database).db.update(users).set({ isActive: false }).where(eq(users.id, u.id));
      const deadline = Date.now() + 2_000;
      let status = 200;
      while (status === 200 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        status = (await t.app.inject({ url: '/api/auth/me', headers: u.auth })).statusCode;
      }
      assert.equal(status, 401, 'still signed in 2 s after deactivation (the 10 s cache was not evicted)');
    });

    test('a role changed by another process applies to the next requests', async () => {
      const u = await t.user();
      const me = async () => (await t.app.inject({ url: '/api/auth/me', headers: u.auth })).json<{ user?: { role: string }; role?: string }>();
      const role = (body: Awaited<ReturnType<typeof me>>) => body.user?.role ?? body.role;
      assert.equal(role(await me()), 'doctor');
      await (other ?? t.database).db.update(users).set({ role: 'admin' }).where(eq(users.id, u.id));
      const deadline = Date.now() + 2_000;
      let now = 'doctor';
      while (now === 'doctor' && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        now = role(await me()) ?? '';
      }
      assert.equal(now, 'admin');
    });
  });
}
