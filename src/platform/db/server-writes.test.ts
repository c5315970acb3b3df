/**
 * A PostgreSQL server's write generation (server-writes.ts) and the read cache on it: pages
 * are kept only while notifications arrive, any notification or write of this process drops
 * them, and a lost LISTEN connection means every read goes to the database until it is back.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type pg from 'pg';
import type { DbOrTx } from './index.js';
import { createReadCache } from './read-cache.js';
import { READS_CHANNEL, trackServerWrites } from './server-writes.js';

interface Handlers {
  onNotify(): void;
  onReconnect(): void;
  onError(): void;
}

/** A pool that answers every statement at once, and counts releases. */
function fakePool() {
  const released: number[] = [];
  const pool = {
    query: async () => ({ rows: [] }),
    connect: async () => ({ release: () => void released.push(1) }),
  };
  return { pool: pool as unknown as pg.Pool, released };
}

async function started(fail = false) {
  const { pool, released } = fakePool();
  const writes = trackServerWrites(pool);
  let handlers: Handlers | null = null;
  let channel = '';
  await writes.start(async (name, h) => {
    if (fail) throw new Error('connection refused');
    channel = name;
    handlers = h;
    return async () => undefined;
  });
  const db = {} as DbOrTx;
  let reads = 0;
  const cache = createReadCache<number>(10, () => writes.generation);
  const read = () => cache(db, 'page-1', async () => ++reads);
  return { writes, handlers: handlers as Handlers | null, channel, read, released };
}

describe('server write generation', () => {
  test('a page is kept until a notification, a write or a transaction of this process', async () => {
    const { writes, handlers, channel, read, released } = await started();
    assert.equal(channel, READS_CHANNEL);
    assert.equal(await read(), 1);
    assert.equal(await read(), 1, 'kept');
    handlers!.onNotify();
    assert.equal(await read(), 2, 'another process committed a change');
    assert.equal(await read(), 2);
    await writes.pool.query('select 1');
    await writes.pool.query({ text: 'select * from scans where id = $1' } as never, ['x']);
    assert.equal(await read(), 2, 'reads do not drop it');
    await writes.pool.query({ text: 'update scans set status = $1' } as never, ['failed']);
    assert.equal(await read(), 3, 'this process wrote');
    const client = await writes.pool.connect();
    const during = read();
    client.release();
    assert.equal(released.length, 1);
    assert.equal(await during, 4, 'read while a transaction was open');
    assert.equal(await read(), 5, 'not kept past the transaction');
    assert.equal(await read(), 5);
  });

  test('while the LISTEN connection is down nothing is kept; once back, pages are read anew', async () => {
    const { writes, handlers, read } = await started();
    assert.equal(await read(), 1);
    handlers!.onError();
    assert.equal(writes.generation.live?.(), false);
    assert.equal(await read(), 2);
    assert.equal(await read(), 3, 'every call reads while notifications may be missed');
    handlers!.onReconnect();
    assert.equal(writes.generation.live?.(), true);
    assert.equal(await read(), 4);
    assert.equal(await read(), 4, 'kept again');
    await writes.stop();
    assert.equal(await read(), 5);
    assert.equal(await read(), 6, 'stopped: nothing kept');
  });

  test('a LISTEN that cannot start leaves the cache off', async () => {
    const { writes, read } = await started(true);
    assert.equal(writes.generation.live?.(), false);
    assert.equal(await read(), 1);
    assert.equal(await read(), 2);
  });
});
