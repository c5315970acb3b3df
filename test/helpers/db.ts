/**
 * Test databases. Every database test runs on embedded PGlite and again on the PostgreSQL
 * server (TEST_POSTGRES_URL, default the local server), each run on a fresh database that is
 * dropped afterwards. In CI the server is required; elsewhere it is used when reachable.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openDatabase, type Database } from '../../src/platform/db/index.js';

export type DbKind = 'pglite' | 'postgres';

const ADMIN_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

let serverReachable: Promise<boolean> | null = null;
async function postgresReachable(): Promise<boolean> {
  serverReachable ??= (async () => {
    const client = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      await client.end();
      return true;
    } catch {
      if (process.env.CI) throw new Error(`CI requires the PostgreSQL server at ${ADMIN_URL} for the database tests`);
      return false;
    }
  })();
  return serverReachable;
}

export async function databaseKinds(): Promise<DbKind[]> {
  const only = process.env.TEST_DB as DbKind | undefined;
  if (only === 'pglite') return ['pglite'];
  if (only === 'postgres') return ['postgres'];
  return (await postgresReachable()) ? ['pglite', 'postgres'] : ['pglite'];
}

export interface TestDatabase extends Database {
  /** Closes and, for a server database, drops it. */
  destroy(): Promise<void>;
}

export async function openTestDatabase(kind: DbKind): Promise<TestDatabase> {
  if (kind === 'pglite') {
    const database = await openDatabase({ databaseUrl: null, dataDir: null });
    return { ...database, destroy: () => database.close() };
  }
  const name = `imagemedix_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const database = await openDatabase({ databaseUrl: url.toString(), dataDir: null, poolSize: 5 });
  return {
    ...database,
    async destroy() {
      await database.close();
      const c = new pg.Client({ connectionString: ADMIN_URL });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`);
      await c.end();
    },
  };
}
