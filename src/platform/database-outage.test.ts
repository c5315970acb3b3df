/**
 * The PostgreSQL server out of reach (restarting, refusing connections): ordinary requests are
 * answered 503 with Retry-After, in the API's error shape, and logged as an outage at warn
 * without the failed statement, not as a 500 "internal error" a client cannot tell from a bug.
 * The app's database handle, its authentication and its audit trail all go to a port where
 * nothing listens, so every statement of the request meets a refused connection.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { drizzle } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { createAuditLog } from '../audit/log.js';
import { createAuthHook } from '../auth/hooks.js';
import { useTestApp, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { captureLog } from '../../test/helpers/log-capture.js';
import { refusingServer, type RefusingServer } from '../../test/helpers/refusing-postgres.js';
import type { Db } from './db/index.js';
import * as schema from './db/schema.js';

/** A loopback port nothing listens on: connecting to it is refused, as to a stopped server. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const port = await closedPort();

describe('the database out of reach', () => {
  const logs = captureLog('warn');
  let t: TestApp;
  let doctor: TestUser;
  const pool = new pg.Pool({ connectionString: `postgres://postgres@127.0.0.1:${port}/imagemedix`, max: 2 });
  after(() => pool.end());
  useTestApp('pglite', {
    log: logs.log,
    build: (ctx) => {
      const down = drizzle(pool, { schema }) as unknown as Db;
      ctx.db = down;
      ctx.audit = createAuditLog(down);
      ctx.authenticate = createAuthHook(down, ctx.tokens);
      return {};
    },
    async setup(app) {
      t = app;
      // Users are made on the test's own database handle, which stays up.
      doctor = await t.user();
    },
  });

  test('a read (the scan list, the signed-in user): 503 {"error"} with Retry-After 30, logged at warn without SQL', async () => {
    const before = logs.entries().length;
    for (const url of ['/api/scans', '/api/auth/me']) {
      const res = await t.app.inject({ url, headers: doctor.auth });
      assert.equal(res.statusCode, 503, `${url}: ${res.body}`);
      assert.equal(res.headers['retry-after'], '30', url);
      assert.deepEqual(Object.keys(res.json<object>()), ['error'], url);
      assert.match(res.json<{ error: string }>().error, /database is not reachable.*try again/, url);
    }
    const entries = logs.entries().slice(before);
    assert.ok(
      entries.some((e) => e.level === 40 && /database is not reachable/.test(String(e.msg))),
      `a warning names the outage: ${JSON.stringify(entries)}`,
    );
    assert.deepEqual(
      entries.filter((e) => Number(e.level) >= 50),
      [],
      'an outage is not logged as an error',
    );
    const text = entries.map((e) => JSON.stringify(e)).join('\n');
    assert.ok(!text.includes('"query"') && !/\b(select|insert into|update|delete from) "/i.test(text) && !text.includes('$1'), `no SQL in the log: ${text}`);
    assert.match(text, /ECONNREFUSED/, 'the log says why, by code');
  });

  test('a change (a new patient): 503 with Retry-After, saying it may or may not have been saved and to check before sending it again', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/patients', headers: doctor.auth, payload: { patientId: 'OUTAGE-1', name: 'Outage Patient' } });
    assert.equal(res.statusCode, 503, res.body);
    assert.equal(res.headers['retry-after'], '30');
    assert.match(res.json<{ error: string }>().error, /may or may not have been saved: check before sending it again/);
    assert.ok(!logs.text().includes('Outage Patient') && !logs.text().includes('OUTAGE-1'), 'nothing the client sent is logged');
  });
});

// A server that answers in a protocol this process does not speak (08P01: not PostgreSQL at that
// port, a pooler refusing a startup parameter) will not come back by itself: a fault to fix, not
// an outage to wait out.
describe('the database answering with a protocol violation', () => {
  const logs = captureLog('warn');
  let t: TestApp;
  let doctor: TestUser;
  let server: RefusingServer;
  let pool: pg.Pool | undefined;
  before(async () => {
    server = await refusingServer('08P01', 'invalid frontend message type 0');
  });
  after(async () => {
    await pool?.end();
    await server.close();
  });
  useTestApp('pglite', {
    log: logs.log,
    build: (ctx) => {
      pool = new pg.Pool({ connectionString: server.url, max: 2 });
      // Only the scans' statements meet it: the signed-in user and the audit trail stay up.
      ctx.db = drizzle(pool, { schema });
      return {};
    },
    async setup(app) {
      t = app;
      doctor = await t.user();
    },
  });

  test('a request answers 500 and logs an error, not 503 "database unreachable" with Retry-After', async () => {
    const before = logs.entries().length;
    const res = await t.app.inject({ url: '/api/scans', headers: doctor.auth });
    assert.equal(res.statusCode, 500, res.body);
    assert.equal(res.headers['retry-after'], undefined);
    assert.doesNotMatch(res.body, /not reachable/);
    assert.ok(
      logs.entries().slice(before).some((e) => Number(e.level) >= 50),
      `logged as an error: ${JSON.stringify(logs.entries().slice(before))}`,
    );
  });
});
