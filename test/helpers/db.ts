/**
 * Test databases. Every database test runs on embedded PGlite and again on the PostgreSQL
 * server (TEST_POSTGRES_URL, default the local server), each run on a fresh database that is
 * dropped afterwards. In CI the server is required; elsewhere it is used when reachable.
 */
import { openDatabase, type Database } from '../../src/platform/db/index.js';
import { createServerDatabase, postgresReachable as accepts } from '../../src/platform/db/server-database.js';

export type DbKind = 'pglite' | 'postgres';

const ADMIN_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

let serverReachable: Promise<boolean> | null = null;
async function postgresReachable(): Promise<boolean> {
  serverReachable ??= accepts(ADMIN_URL).then((reachable) => {
    if (!reachable && process.env.CI) throw new Error(`CI requires the PostgreSQL server at ${ADMIN_URL} for the database tests`);
    return reachable;
  });
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
  const server = await createServerDatabase(ADMIN_URL, 'imagemedix_test');
  let database: Database;
  try {
    database = await openDatabase({ databaseUrl: server.url, dataDir: null, poolSize: 5 });
  } catch (err) {
    // A migration that failed must not leave its database behind.
    await server.drop();
    throw err;
  }
  return {
    ...database,
    async destroy() {
      await database.close();
      await server.drop();
    },
  };
}
