import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { openTestDatabase } from '../../../test/helpers/db.js';
import { serverPool } from './index.js';
import { createServerDatabase, postgresReachable } from './server-database.js';

const ADMIN_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

async function databasesNamed(prefix: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: ADMIN_URL });
  await client.connect();
  try {
    const { rows } = await client.query<{ datname: string }>('select datname from pg_database where datname like $1', [`${prefix}%`]);
    return rows.map((r) => r.datname);
  } finally {
    await client.end();
  }
}

test('a throwaway server database is made empty, reachable at its URL, and dropped with its connections still open', async (t) => {
  if (!(await postgresReachable(ADMIN_URL))) return t.skip(`no PostgreSQL server at ${ADMIN_URL}`);
  const server = await createServerDatabase(ADMIN_URL, 'imagemedix_throwaway_check');
  assert.match(server.name, /^imagemedix_throwaway_check_[0-9a-f]{12}$/);
  assert.deepEqual(await databasesNamed(server.name), [server.name]);
  const open = new pg.Client({ connectionString: server.url });
  await open.connect();
  assert.equal((await open.query('select current_database() as name')).rows[0].name, server.name);
  open.on('error', () => undefined); // the drop ends this connection
  await server.drop();
  await server.drop();
  assert.deepEqual(await databasesNamed(server.name), []);
});

test('a prefix that would need quoting in SQL is refused before anything is made', async () => {
  await assert.rejects(createServerDatabase(ADMIN_URL, 'bench; drop database postgres'), /prefix .* must be lower-case letters, digits and _/);
});

test("the tests' server database goes when the test is done", async (t) => {
  if (!(await postgresReachable(ADMIN_URL))) return t.skip(`no PostgreSQL server at ${ADMIN_URL}`);
  const database = await openTestDatabase('postgres');
  const name = new URL(database.connectionString ?? '').pathname.slice(1);
  assert.match(name, /^imagemedix_test_/);
  await database.destroy();
  assert.deepEqual(await databasesNamed(name), []);
});

test("a quiet spell closes the pool's idle server connections but one, which keeps its prepared statements", async (t) => {
  if (!(await postgresReachable(ADMIN_URL))) return t.skip(`no PostgreSQL server at ${ADMIN_URL}`);
  const server = await createServerDatabase(ADMIN_URL, 'imagemedix_quiet_check');
  const pool = serverPool({ connectionString: server.url, max: 3, preparedStatements: true });
  // pg's default is 10 s; the same rule, sooner.
  (pool as unknown as { options: { idleTimeoutMillis: number } }).options.idleTimeoutMillis = 50;
  const statement = { name: 'quiet_check', text: 'select pg_backend_pid() as pid' };
  try {
    const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
    const pids = await Promise.all(clients.map(async (c) => (await c.query<{ pid: number }>(statement)).rows[0]!.pid));
    for (const c of clients) c.release();
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(pool.totalCount, 1, 'one connection stays open');
    // The statement prepared on it is still there: a burst after a pause starts on a warm connection.
    const { rows } = await pool.query<{ pid: number; prepared: boolean }>({
      name: 'quiet_check_prepared',
      text: "select pg_backend_pid() as pid, exists (select 1 from pg_prepared_statements where name = 'quiet_check') as prepared",
    });
    assert.ok(pids.includes(rows[0]!.pid), 'a connection from before the pause');
    assert.equal(rows[0]!.prepared, true);
  } finally {
    await pool.end();
    await server.drop();
  }
});
