/**
 * A PostgreSQL restart cuts every connection at once, including one held by a transaction
 * between two statements. That must fail the transaction, never the process (it did: an
 * API process died with "Unhandled 'error' event" in the fault test, test/deployment).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { databaseKinds, openTestDatabase } from '../../../test/helpers/db.js';

const onServer = (await databaseKinds()).includes('postgres');

test('a connection cut while its transaction waits between statements fails that transaction; the process and the pool go on', { skip: !onServer && 'needs the PostgreSQL server' }, async () => {
  const database = await openTestDatabase('postgres');
  const killer = new pg.Client({ connectionString: database.connectionString! });
  await killer.connect();
  try {
    const outcome = await database.db
      .transaction(async (tx) => {
        const result: unknown = await tx.execute(sql`select pg_backend_pid() as pid`);
        const pid = (result as { rows: { pid: number }[] }).rows[0]!.pid;
        // The transaction's connection is cut while this code is between statements (as an
        // upload's transaction waits on storage)...
        await killer.query('select pg_terminate_backend($1)', [pid]);
        for (let i = 0; ; i++) {
          const { rows } = await killer.query('select 1 from pg_stat_activity where pid = $1', [pid]);
          if (rows.length === 0) break;
          assert.ok(i < 250, 'the backend was not terminated');
          await new Promise((r) => setTimeout(r, 20));
        }
        // ...and the client hears of it (the socket closes) before the next statement.
        await new Promise((r) => setTimeout(r, 200));
        await tx.execute(sql`select 1`);
      })
      .then(
        () => 'committed',
        () => 'failed',
      );
    assert.equal(outcome, 'failed');
    // The pool has dropped the dead connection and serves the next request.
    await database.ping();
  } finally {
    await killer.end();
    await database.destroy();
  }
});
