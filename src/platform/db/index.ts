/**
 * Database access: embedded PostgreSQL (PGlite, persisted under DATA_DIR) when no
 * DATABASE_URL is set, a PostgreSQL server otherwise. Both get the same Drizzle schema and the
 * same migrations, applied at start-up.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import type { Query, SQL } from 'drizzle-orm';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import { PgDialect, type PgDatabase, type PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import pg from 'pg';
import { isDatabaseUnreachable } from './errors.js';
import { listenOnServer } from './listen.js';
import { trackServerWrites } from './server-writes.js';
import { withNamedStatements } from './pglite-statements.js';
import { trackWrites, type WriteGeneration } from './write-generation.js';
import * as schema from './schema.js';

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;
/** A database handle or an open transaction: repositories accept either. */
export type DbOrTx = Parameters<Parameters<Db['transaction']>[0]>[0] | Db;

/**
 * A statement built and prepared once per database handle (`build` is called on first use):
 * building a query with Drizzle costs more CPU than running it, and a named statement is parsed
 * and planned once per connection.
 */
export function preparedPerDb<T>(build: (db: DbOrTx) => T): (db: DbOrTx) => T {
  const byDb = new WeakMap<object, T>();
  return (db) => {
    let statement = byDb.get(db);
    if (statement === undefined) byDb.set(db, (statement = build(db)));
    return statement;
  };
}

/** What Drizzle keeps of a built statement: its SQL text and parameters, and how rows map back. */
interface BuiltStatement {
  getQuery(): Query;
  fields: unknown;
  isResponseInArrayMode(): boolean;
  customResultMapper?: unknown;
  joinsNotNullableMap?: unknown;
}

/**
 * Like `preparedPerDb`, for statements run inside transactions too (an upload's): the SQL is
 * built once, on first use, and each handle (a transaction is a new one each time) only gets a
 * statement object bound to its connection, through the handle's own session, so the result
 * rows map back exactly as Drizzle's. On a PostgreSQL server the statement is named: each
 * connection parses and plans it once.
 */
export function builtOncePerDb<P>(name: string, build: (db: DbOrTx) => { prepare(name: string): P }): (db: DbOrTx) => P {
  let built: BuiltStatement | undefined;
  const byDb = new WeakMap<object, P>();
  return (db) => {
    let statement = byDb.get(db);
    if (statement !== undefined) return statement;
    if (built === undefined) {
      statement = build(db).prepare(name);
      built = statement as unknown as BuiltStatement;
    } else {
      const made = db._.session.prepareQuery(built.getQuery(), built.fields as never, name, built.isResponseInArrayMode(), built.customResultMapper as never);
      Object.assign(made, { joinsNotNullableMap: built.joinsNotNullableMap });
      statement = made as unknown as P;
    }
    byDb.set(db, statement);
    return statement;
  };
}

/** Distinct texts one `namedByText` names at most; any more run unnamed (parsed and planned each time). */
const MAX_NAMED_TEXTS = 32;

/**
 * Names for the texts of a statement built at each call whose text takes one of a few forms
 * (which columns it sets, whether a condition is present): each text gets a name of its own,
 * `prefix_` and a hash of the text, the same in every process. Bounded: a statement that turned
 * out to have more forms than expected runs its further texts unnamed instead of filling each
 * connection's statement cache.
 */
export function namedByText(prefix: string): (text: string) => string | undefined {
  const names = new Map<string, string>();
  return (text) => {
    let name = names.get(text);
    if (name === undefined && names.size < MAX_NAMED_TEXTS) {
      names.set(text, (name = `${prefix}_${createHash('sha1').update(text).digest('hex').slice(0, 12)}`));
    }
    return name;
  };
}

const dialect = new PgDialect();

/** The text and parameters of `statement`; its placeholders stay, to be filled at each run by executeBuilt. */
export function buildQuery(statement: SQL): Query {
  return dialect.sqlToQuery(statement);
}

/**
 * Runs a query from buildQuery (built once, with placeholders) on the handle's
 * session as the named statement `name(text)`, its placeholders filled with `values` (each
 * through its column's encoder where it stands for a column's value): on a PostgreSQL server each
 * connection parses it once and keeps its plan (PGlite's driver ignores the name;
 * pglite-statements.ts names repeated texts there). The rows as the driver gives them, not
 * mapped by Drizzle.
 */
export async function executeBuilt<Row>(
  db: DbOrTx,
  name: (text: string) => string | undefined,
  query: Query,
  values: Record<string, unknown> = {},
): Promise<Row[]> {
  const result: unknown = await db._.session.prepareQuery(query, undefined, name(query.sql), false).execute(values);
  // pg answers { rows }, PGlite the rows themselves.
  return (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as Row[];
}

const writeGenerations = new WeakMap<object, WriteGeneration>();

/**
 * The write generation of a database's handle (not of a transaction's): what exact read caches
 * key on. PGlite's moves with every statement that may write (write-generation.ts); a
 * PostgreSQL server's also with every change another process commits (server-writes.ts).
 */
export function writeGenerationOf(db: DbOrTx): WriteGeneration | undefined {
  return writeGenerations.get(db);
}

/** The raw SQL surface pg-boss needs (its `db` option). */
export interface SqlExecutor {
  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

export interface Database {
  kind: 'pglite' | 'postgres';
  db: Db;
  /** For pg-boss: PGlite needs this adapter; on a server pg-boss opens its own pool. */
  executor: SqlExecutor;
  connectionString: string | null;
  /** Whether statements may be named on the server (OpenOptions.preparedStatements). */
  preparedStatements: boolean;
  /**
   * Calls `onNotify` for every NOTIFY on `channel` once its transaction commits, from this
   * process or another; `onReconnect` after a lost server connection came back. Returns unlisten.
   */
  listen(channel: string, handlers: { onNotify: (payload: string) => void; onReconnect?: () => void; onError?: (err: Error) => void }): Promise<() => Promise<void>>;
  ping(): Promise<void>;
  /**
   * Runs `fn` while holding the site-wide start-up lock (a PostgreSQL advisory lock), so
   * processes started together take turns at migrations and queue creation: the DDL they run
   * (CREATE TABLE, pg-boss's queue partitions) fails or deadlocks when two run it at once.
   * PGlite has one process: `fn` just runs.
   */
  withStartupLock<T>(fn: () => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

/** The advisory-lock key of start-up work: any fixed 64-bit number no other code uses. */
const STARTUP_LOCK_KEY = 7_262_301_947_151n;

/**
 * Holds the start-up lock on a connection of its own, outside the pool: a session lock lives
 * with its connection, and `fn` needs the pool's connections (a pool of one would wait for ever).
 */
async function withAdvisoryLock<T>(connectionString: string, fn: () => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString });
  // A connection cut while waiting (server restart) fails the start-up; it must not crash the process.
  client.on('error', () => undefined);
  await client.connect();
  try {
    await client.query('select pg_advisory_lock($1)', [STARTUP_LOCK_KEY.toString()]);
    return await fn();
  } finally {
    // Ending the session releases its advisory locks.
    await client.end().catch(() => undefined);
  }
}

const MIGRATIONS = path.join(path.dirname(new URL(import.meta.url).pathname), 'migrations');

export interface OpenOptions {
  /** PostgreSQL connection string; null for embedded PGlite. */
  databaseUrl: string | null;
  /** Directory for PGlite's files; null keeps it in memory (tests). */
  dataDir: string | null;
  poolSize?: number;
  /**
   * Named (prepared) statements on a PostgreSQL server (default on): off, every statement is sent
   * unnamed, as a connection pooler that hands each transaction another server connection
   * (PgBouncer in transaction mode before 1.21) needs. PGlite ignores it.
   */
  preparedStatements?: boolean;
  /**
   * How long start-up waits for a PostgreSQL server that is not accepting connections yet
   * (starting, restarting, or started together with this process) before giving up.
   */
  startupWaitMs?: number;
}

/** What to correct when a server refuses this process at start-up, by SQLSTATE. */
function startupFix(code: string): string | undefined {
  if (code.startsWith('28')) return "correct the user or password in the database URL (DATABASE_URL), or the server's pg_hba.conf";
  if (code === '3D000') return 'create the database, or correct its name in the database URL (DATABASE_URL)';
  if (code === '08P01' || code === '08004') {
    return "check that the database URL (DATABASE_URL) names the port of a PostgreSQL server or of its pooler, and that server's or pooler's log for why";
  }
  return undefined;
}

/**
 * A server that answered and refused this process: a wrong user or password (SQLSTATE class 28),
 * no such database (3D000), or a connection it would not speak to (08P01 protocol violation,
 * 08004 connection rejected). Waiting would not help, so start-up fails at once, saying which
 * server and database (never the password) and what to correct.
 */
function refusedAtStart(err: unknown, connectionString: string): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (!(err instanceof Error) || typeof code !== 'string') return err;
  const fix = startupFix(code);
  if (fix === undefined) return err;
  let where = 'the PostgreSQL server';
  try {
    const url = new URL(connectionString);
    where = `the PostgreSQL server at ${url.host || 'its default host'}, database ${decodeURIComponent(url.pathname.slice(1)) || '(the user\'s)'},`;
  } catch {
    // Not a URL (a key=value string): the server's own message names the user or database.
  }
  return Object.assign(new Error(`${where} refused the connection: ${err.message} (SQLSTATE ${code}); ${fix}`, { cause: err }), { code });
}

/**
 * Waits, with backoff, until the server answers: a worker or API process started beside a
 * PostgreSQL that is still starting (a host boot, a compose file, a server restart) comes up
 * with it instead of exiting. It waits on what a request answers 503 for (isDatabaseUnreachable:
 * the server down, starting, shutting down or out of connections); any other error
 * (authentication, unknown database, a protocol violation) fails at once.
 */
async function serverAccepting(pool: pg.Pool, connectionString: string, waitMs: number): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (let delay = 100; ; delay = Math.min(delay * 2, 2_000)) {
    try {
      await pool.query('select 1');
      return;
    } catch (err) {
      if (!isDatabaseUnreachable(err)) throw refusedAtStart(err, connectionString);
      if (Date.now() + delay > deadline) throw err;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

export async function openDatabase(opts: OpenOptions): Promise<Database> {
  if (opts.databaseUrl) {
    const connectionString = opts.databaseUrl;
    const preparedStatements = opts.preparedStatements ?? true;
    const pool = serverPool({ connectionString, max: opts.poolSize ?? 10, preparedStatements });
    try {
      await serverAccepting(pool, connectionString, opts.startupWaitMs ?? 60_000);
      await withAdvisoryLock(connectionString, () => migratePg(drizzlePg(pool), { migrationsFolder: MIGRATIONS }));
    } catch (err) {
      // Start-up gave up (no server in time, a refused login, a failed migration): the pool's
      // connections go with it, so the process exits with nothing left open. The error says
      // why; a failure to end the pool must not replace it.
      await pool.end().catch(() => undefined);
      throw err;
    }
    // Everything after the migrations goes through a pool whose writes move the write
    // generation, and the NOTIFY of any other process's change moves it too.
    const writes = trackServerWrites(pool);
    const db = drizzlePg(writes.pool, { schema }) as unknown as Db;
    writeGenerations.set(db, writes.generation);
    await writes.start((channel, handlers) => listenOnServer({ connectionString, channel, ...handlers }));
    return {
      kind: 'postgres',
      db,
      connectionString: opts.databaseUrl,
      preparedStatements,
      executor: {
        async executeSql(text, values) {
          const r = await writes.pool.query(text, values);
          return { rows: r.rows };
        },
      },
      listen(channel, handlers) {
        return listenOnServer({ connectionString, channel, ...handlers });
      },
      async ping() {
        await pool.query('select 1');
      },
      withStartupLock(fn) {
        return withAdvisoryLock(connectionString, fn);
      },
      async close() {
        await writes.stop();
        await pool.end();
      },
    };
  }

  let dir: string | undefined;
  if (opts.dataDir) {
    dir = path.join(opts.dataDir, 'pgdata');
    mkdirSync(dir, { recursive: true });
  }
  const client = dir ? new PGlite(dir) : new PGlite();
  await client.waitReady;
  await migratePglite(drizzlePglite(client), { migrationsFolder: MIGRATIONS });
  // Statements run again are named, so PGlite plans them once (see pglite-statements.ts), and
  // every statement after the migrations moves the write generation read caches key on.
  const tracked = trackWrites(withNamedStatements(client));
  const db = drizzlePglite(tracked.client, { schema }) as unknown as Db;
  writeGenerations.set(db, tracked.generation);
  return {
    kind: 'pglite',
    db,
    connectionString: null,
    preparedStatements: true,
    executor: {
      async executeSql(text, values) {
        return tracked.writing(async () => {
          if (values && values.length > 0) {
            const r = await tracked.client.query(text, values);
            return { rows: r.rows };
          }
          // pg-boss sends multi-statement scripts (its own migrations) without parameters.
          const results = await tracked.client.exec(text);
          return { rows: results.at(-1)?.rows ?? [] };
        });
      },
    },
    async listen(channel, { onNotify }) {
      // One embedded instance, one process: its notifications arrive when a commit returns.
      const unlisten = await tracked.client.listen(channel, onNotify);
      return () => unlisten();
    },
    async ping() {
      await client.query('select 1');
    },
    withStartupLock(fn) {
      return fn();
    },
    async close() {
      await client.close();
    },
  };
}

/** A pool of server connections as the application's statements need them (see survivesServerRestarts). */
export function serverPool(opts: { connectionString: string; max: number; preparedStatements: boolean }): pg.Pool {
  // After a quiet spell (pg's idle timeout, 10 s) one connection stays: a fresh server backend
  // would make the next burst's first statements pay again for their preparation and the
  // server's caches (the upload's, 10-40 ms with the uploads behind it waiting; server.ts).
  const pool = new pg.Pool({ connectionString: opts.connectionString, max: opts.max, min: 1 });
  survivesServerRestarts(pool);
  if (!opts.preparedStatements) {
    // DATABASE_PREPARED_STATEMENTS=false (a pooler that cannot keep a connection's statements):
    // every statement goes unnamed, whatever name Drizzle or a caller gave it.
    pool.on('connect', (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      client.query = ((config: unknown, ...rest: unknown[]) =>
        query(config !== null && typeof config === 'object' && 'name' in config && !('submit' in config) ? { ...config, name: undefined } : config, ...rest)) as typeof client.query;
    });
  }
  return pool;
}

/**
 * A server restart cuts every connection, and each connection's client emits 'error'. The pool
 * handles it for idle clients, but not for a client checked out between two statements (a
 * transaction waiting on storage, say): unheard, that 'error' ended the whole process. Each
 * client gets a listener for its lifetime; the statement that next uses it fails instead,
 * and the pool discards it when it is released.
 */
function survivesServerRestarts(pool: pg.Pool): void {
  pool.on('error', () => undefined);
  pool.on('connect', (client) => {
    client.on('error', () => undefined);
  });
}

/**
 * Runs parameterised SQL text ($1, $2...) on a Drizzle handle, so raw statements (pg-boss's) can
 * join a Drizzle transaction on either driver. The text goes to the handle's session as it is:
 * no Drizzle SQL is built for it (an upload's job insert is one of these).
 */
export function executorFor(tx: DbOrTx): SqlExecutor {
  return {
    async executeSql(text, values = []) {
      // pg-boss passes undefined for unset options; the drivers want null.
      const params = values.map((value) => value ?? null);
      const r: unknown = await tx._.session.prepareQuery({ sql: text, params }, undefined, undefined, false).execute();
      // pg answers { rows }, PGlite answers the rows themselves.
      return { rows: Array.isArray(r) ? (r as unknown[]) : ((r as { rows?: unknown[] }).rows ?? []) };
    },
  };
}
