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
import { isDatabaseUnreachable } from './errors.js';

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
        (err: unknown) => err,
      );
    assert.notEqual(outcome, 'committed');
    // What the HTTP error handler answers 503 with Retry-After, not 500.
    assert.ok(isDatabaseUnreachable(outcome), `not recognised as the database out of reach: ${String(outcome)}`);
    // The pool has dropped the dead connection and serves the next request.
    await database.ping();
  } finally {
    await killer.end();
    await database.destroy();
  }
});

test('the database out of reach is told from a statement it refused, whichever layer wraps the error', () => {
  const withCode = (code: string, message = 'x') => Object.assign(new Error(message), { code });
  const wrapped = (cause: Error) => Object.assign(new Error('Failed query: select "id" from "scans"\nparams: '), { query: 'select "id" from "scans"', params: [], cause });
  const unreachable = [
    withCode('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432'),
    withCode('57P01', 'terminating connection due to administrator command'),
    withCode('57P03', 'the database system is starting up'),
    withCode('53300', 'sorry, too many clients already'),
    withCode('08006'),
    new Error('Connection terminated unexpectedly'),
    new Error('timeout exceeded when trying to connect'),
    wrapped(new Error('Connection terminated unexpectedly')),
    wrapped(withCode('57P01')),
    new AggregateError([withCode('ECONNREFUSED'), withCode('ECONNREFUSED')], ''),
  ];
  for (const err of unreachable) assert.ok(isDatabaseUnreachable(err), `${String((err as { code?: string }).code)} ${err.message}`);
  const refused = [
    withCode('23505', 'duplicate key value violates unique constraint'),
    withCode('28P01', 'password authentication failed'),
    withCode('57014', 'canceling statement due to statement timeout'),
    wrapped(withCode('22P02')),
    // Drizzle's message quotes the statement: never read as pg's own.
    Object.assign(new Error("Failed query: select 'Connection terminated'"), { query: '', params: [] }),
    new Error('boom'),
    'Connection terminated',
    null,
  ];
  for (const err of refused) assert.equal(isDatabaseUnreachable(err), false, String(err));
});

test('a protocol violation (08P01) or a connection the server rejects (08004) is no outage: it will not heal by waiting, so a request answers 500 and start-up fails at once', () => {
  const withCode = (code: string, message: string) => Object.assign(new Error(message), { code });
  const wrapped = (cause: Error) => Object.assign(new Error('Failed query: select 1\nparams: '), { query: 'select 1', params: [], cause });
  for (const err of [
    withCode('08P01', 'invalid frontend message type 0'),
    withCode('08P01', 'unsupported startup parameter: search_path'),
    wrapped(withCode('08P01', 'invalid message format')),
    withCode('08004', 'Login failed for user "imagemedix"'),
  ]) {
    assert.equal(isDatabaseUnreachable(err), false, err.message);
  }
  // The rest of class 08 is about the connection itself.
  for (const code of ['08000', '08001', '08003', '08006', '08007']) assert.ok(isDatabaseUnreachable(withCode(code, 'x')), code);
  // PgBouncer answers its own outages (the server behind it down, its pools full) with 08P01 too.
  for (const message of [
    'pgbouncer cannot connect to server',
    'server login has been failing, try again later (server_login_retry)',
    'no more connections allowed (max_client_conn)',
    'query_wait_timeout',
    'server conn crashed?',
  ]) {
    assert.ok(isDatabaseUnreachable(withCode('08P01', message)), message);
    assert.ok(isDatabaseUnreachable(wrapped(withCode('08P01', message))), `wrapped: ${message}`);
  }
});
