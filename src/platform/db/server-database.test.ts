import assert from 'node:assert/strict';
import { test } from 'node:test';
import pg from 'pg';
import { openTestDatabase } from '../../../test/helpers/db.js';
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
