/**
 * A process started while its PostgreSQL server is not accepting connections yet (a host
 * boot, a compose file, a server restart) waits for it instead of exiting; one pointed at a
 * server that never comes gives up after its wait, with the connection error, its pool ended.
 * One that refuses the login (a wrong password, no such database) or the protocol fails at
 * once, saying what to correct.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import pg from 'pg';
import { openDatabase } from './index.js';
import { databaseKinds, openTestDatabase } from '../../../test/helpers/db.js';
import { refusingServer } from '../../../test/helpers/refusing-postgres.js';

const onServer = (await databaseKinds()).includes('postgres');

/** A free loopback port nothing listens on (yet). */
async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((r) => probe.close(r));
  return port;
}

test('start-up waits for a PostgreSQL server that begins accepting connections later', { skip: !onServer && 'needs the PostgreSQL server' }, async () => {
  const target = await openTestDatabase('postgres');
  const real = new URL(target.connectionString!);
  const port = await freePort();
  // A relay to the real server that starts listening only after 1.5 s: the "server" is down until then.
  const relay = net.createServer((client) => {
    const upstream = net.connect(Number(real.port || 5432), real.hostname);
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  const opening = setTimeout(() => relay.listen(port, '127.0.0.1'), 1_500);
  const viaRelay = new URL(real);
  viaRelay.port = String(port);
  const started = Date.now();
  try {
    const database = await openDatabase({ databaseUrl: viaRelay.toString(), dataDir: null, poolSize: 2, startupWaitMs: 20_000 });
    try {
      assert.ok(Date.now() - started >= 1_400, 'it opened before the server was there');
      await database.ping();
    } finally {
      await database.close();
    }
  } finally {
    clearTimeout(opening);
    await new Promise((r) => relay.close(r));
    await target.destroy();
  }
});

test('start-up gives up on a server that never comes, after its wait, with the connection error', async () => {
  const port = await freePort();
  const started = Date.now();
  await assert.rejects(
    openDatabase({ databaseUrl: `postgres://postgres@127.0.0.1:${port}/nothing`, dataDir: null, startupWaitMs: 800 }),
    (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED',
  );
  const waited = Date.now() - started;
  assert.ok(waited >= 400 && waited < 5_000, `waited ${waited} ms`);
});

test('start-up that gives up ends its connection pool, and fails with the connection error even when ending the pool fails', async (t) => {
  const port = await freePort();
  const databaseUrl = `postgres://postgres@127.0.0.1:${port}/nothing`;
  const end = t.mock.method(pg.Pool.prototype, 'end');
  await assert.rejects(openDatabase({ databaseUrl, dataDir: null, startupWaitMs: 150 }), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED');
  assert.equal(end.mock.callCount(), 1, 'the pool was left open');

  end.mock.mockImplementation(() => Promise.reject(new Error('the pool could not be ended')));
  await assert.rejects(openDatabase({ databaseUrl, dataDir: null, startupWaitMs: 150 }), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED');
  assert.equal(end.mock.callCount(), 2);
});

for (const [code, serverMessage, fix] of [
  ['28P01', 'password authentication failed for user "imagemedix"', /correct the user or password in the database URL \(DATABASE_URL\)/],
  ['3D000', 'database "imagemedix_site" does not exist', /create the database, or correct its name in the database URL \(DATABASE_URL\)/],
  // Not PostgreSQL's protocol at that port, or a pooler refusing a startup parameter: waiting would not help.
  ['08P01', 'unsupported startup parameter: search_path', /check that the database URL \(DATABASE_URL\) names the port of a PostgreSQL server or of its pooler/],
] as const) {
  test(`start-up fails at once, without waiting, on a server that refuses the connection (${code}), saying what to correct`, async () => {
    const server = await refusingServer(code, serverMessage);
    const started = Date.now();
    try {
      await assert.rejects(openDatabase({ databaseUrl: server.url, dataDir: null, startupWaitMs: 20_000 }), (err: Error & { code?: string }) => {
        assert.equal(err.code, code);
        assert.ok(err.message.includes(`the PostgreSQL server at ${new URL(server.url).host}, database imagemedix_site, refused the connection: ${serverMessage}`), err.message);
        assert.match(err.message, fix);
        assert.ok(!err.message.includes('s3cret-pw'), 'the password stays out of the message');
        return true;
      });
      assert.equal(server.connections(), 1, 'tried again');
      assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
    } finally {
      await server.close();
    }
  });
}

// What a request answers 503 for (isDatabaseUnreachable), start-up waits on: starting up, too many connections.
for (const code of ['57P03', '53300']) {
  test(`start-up waits on a server that answers ${code}, as a request answers 503 for it, and gives up after its wait`, async () => {
    const server = await refusingServer(code, code === '57P03' ? 'the database system is starting up' : 'sorry, too many clients already');
    try {
      await assert.rejects(openDatabase({ databaseUrl: server.url, dataDir: null, startupWaitMs: 800 }), (err: NodeJS.ErrnoException) => err.code === code);
      assert.ok(server.connections() >= 3, `${server.connections()} connections: it did not wait`);
    } finally {
      await server.close();
    }
  });
}
