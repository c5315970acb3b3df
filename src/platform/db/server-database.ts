/**
 * Throwaway databases on a PostgreSQL server, for the tests and the benchmarks: each run makes its
 * own (a prefix and a random suffix) and drops it afterwards. One owner, so both make and drop
 * them alike and a failed start leaves no database behind.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

/** Whether the server at `url` accepts a connection within 3 seconds. */
export async function postgresReachable(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.end();
    return true;
  } catch {
    return false;
  }
}

export interface ServerDatabase {
  name: string;
  /** `adminUrl` with the new database's name. */
  url: string;
  /** Drops the database, closing any connection still open to it; safe to call twice. */
  drop(): Promise<void>;
}

/** A fresh, empty database on the server of `adminUrl` (a role allowed to create databases). */
export async function createServerDatabase(adminUrl: string, prefix: string): Promise<ServerDatabase> {
  // The name goes into SQL unquoted: only what needs no quoting.
  if (!/^[a-z_][a-z0-9_]{0,40}$/.test(prefix)) {
    throw new Error(`database name prefix "${prefix}" must be lower-case letters, digits and _ (at most 41)`);
  }
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  await asAdmin(adminUrl, `create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return { name, url: url.toString(), drop: () => asAdmin(adminUrl, `drop database if exists ${name} with (force)`) };
}

async function asAdmin(adminUrl: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}
