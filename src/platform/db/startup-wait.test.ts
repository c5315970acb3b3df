/**
 * A process started while its PostgreSQL server is not accepting connections yet (a host
 * boot, a compose file, a server restart) waits for it instead of exiting; one pointed at a
 * server that never comes gives up after its wait, with the connection error.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { openDatabase } from './index.js';
import { databaseKinds, openTestDatabase } from '../../../test/helpers/db.js';

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
