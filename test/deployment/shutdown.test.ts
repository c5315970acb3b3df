/**
 * The default deployment, one process (docs/deployment.md): `npm start` runs the compiled
 * dist/server.js with the analysis worker in-process and embedded PGlite in DATA_DIR. SIGTERM
 * (then a second SIGINT and SIGTERM, as an impatient operator or a process manager sends)
 * arrives while an upload is still arriving and an analysis is running. What a user would
 * notice: the upload is answered 201, the analysis finishes, new connections are refused at
 * once, the process exits 0 soon, and the data directory opens again with both scans in it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { before, test } from 'node:test';
import { inArray } from 'drizzle-orm';
import { createTokenService } from '../../src/auth/tokens.js';
import { freePort } from '../../src/bench/support.js';
import { REPO_ROOT } from '../../src/platform/config.js';
import { openDatabase } from '../../src/platform/db/index.js';
import { analyses, scans } from '../../src/platform/db/schema.js';
import { createUser } from '../../src/users/service.js';
import { halfSentUpload, spawnLogged, until, uploadTo, type Child } from '../helpers/cluster.js';

const run = promisify(execFile);

/** Whether a new TCP connection to the port is refused (the listener is closed). */
function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}

before(async () => {
  // What `npm start` runs first: a build when dist/ is missing or older than src/.
  await run(process.execPath, ['--import', 'tsx', 'scripts/build.ts', '--if-stale'], { cwd: REPO_ROOT, timeout: 600_000 });
});

test('npm start, SIGTERM with an upload arriving and an analysis running: both finish, new connections are refused, exit 0, PGlite intact', { timeout: 600_000 }, async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'imagemedix-shutdown-'));
  let server: Child | null = null;
  try {
    // The doctor is made before the server starts: a PGlite data directory has one process at a time.
    const jwtSecret = randomBytes(32).toString('hex');
    const setup = await openDatabase({ databaseUrl: null, dataDir });
    const user = await createUser(setup.db, {
      email: `shutdown-${randomBytes(4).toString('hex')}@example.test`,
      password: randomBytes(18).toString('base64url'),
      name: 'Shutdown Doctor',
      role: 'doctor',
    });
    await setup.close();
    const token = await createTokenService(new TextEncoder().encode(jwtSecret), '1h').issue(user);
    const auth = { authorization: `Bearer ${token}` };

    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const child = spawnLogged(
      'server',
      ['--enable-source-maps', 'dist/server.js'],
      { DATA_DIR: dataDir, JWT_SECRET: jwtSecret, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'info', RATE_LIMIT_MAX: '100000', WORKER_CONCURRENCY: '1' },
      port,
    );
    server = child;
    await until('the server to answer /readyz', async () => {
      if (child.process.exitCode !== null) throw new Error(`the server exited (${child.process.exitCode}):\n${child.tail()}`);
      return (await fetch(`${base}/readyz`).catch(() => null))?.status === 200;
    });

    // Scan A: its analysis starts at once; being the first, it also loads the models, so it
    // is still running when the upload of scan B begins.
    const uploadedA = await uploadTo(base, auth, 0);
    assert.equal(uploadedA.status, 201, await uploadedA.clone().text());
    const scanA = ((await uploadedA.json()) as { _id: string })._id;
    await until('the analysis of scan A to be running', async () => {
      const status = (await (await fetch(`${base}/api/scans/${scanA}/status`, { headers: auth })).json()) as {
        status: string;
        jobStatus: { stage: string | null } | null;
      };
      assert.notEqual(status.status, 'completed', 'the analysis finished before the test could stop the server under it');
      return status.status === 'processing' && status.jobStatus?.stage != null;
    }, 60_000, 20);

    // Scan B: half of its body sent, the rest after SIGTERM.
    const { response: uploadB, sendRest } = halfSentUpload(port, auth, {
      patientId: 'SHUTDOWN-1',
      patientName: 'Shutdown Patient',
      scanType: 'chest-xray',
      file: 'chest-normal-1.jpeg',
    });
    const posts = () => child.logs.filter((l) => l.msg === 'incoming request' && (l.req as { method?: string } | undefined)?.method === 'POST').length;
    await until('the upload of scan B to reach the server', async () => posts() === 2, 30_000, 10);

    const signalledAt = Date.now();
    child.process.kill('SIGTERM');
    await until('the server to begin shutting down', async () => child.logs.some((l) => typeof l.msg === 'string' && l.msg.startsWith('shutting down')), 30_000, 10);
    // Ctrl-C and another SIGTERM while it drains: no second shutdown, no exit under PGlite.
    child.process.kill('SIGINT');
    child.process.kill('SIGTERM');

    // The listener closes at once, while the upload is still arriving.
    await until('new connections to be refused', () => connectionRefused(port), 10_000, 20);
    assert.equal(child.process.exitCode, null, 'the server exited before answering the upload in flight');
    sendRest();
    const answeredB = await uploadB;
    assert.equal(answeredB.status, 201, `the upload in flight was not answered: ${answeredB.status} ${answeredB.text}\n${child.tail()}`);
    const scanB = (JSON.parse(answeredB.text) as { _id: string })._id;
    assert.equal(await connectionRefused(port), true, 'a new connection was accepted during the shutdown');

    const exit = await child.exited;
    const stoppedInMs = Date.now() - signalledAt;
    assert.deepEqual(exit, { code: 0, signal: null }, child.tail());
    assert.ok(stoppedInMs < 40_000, `the shutdown took ${stoppedInMs} ms`);
    const finishedA = child.logs.find((l) => l.msg === 'analysis finished' && l.scanId === scanA);
    assert.equal(finishedA?.outcome, 'completed', `the running analysis did not finish before the exit:\n${child.tail()}`);
    assert.ok(child.logs.some((l) => l.msg === 'already shutting down; waiting for the work in flight' && l.signal === 'SIGINT'), child.tail());
    const errors = child.logs.filter((l) => typeof l.level === 'number' && l.level >= 50);
    assert.deepEqual(errors, [], 'errors were logged while stopping');

    // PGlite was closed (an exit without close leaves its postmaster.pid behind); the data
    // directory opens again with both scans and no analysis left half-done: scan B's waits in
    // the queue for the next start, or is done.
    assert.equal(existsSync(path.join(dataDir, 'pgdata', 'postmaster.pid')), false, 'the server exited with PGlite still open');
    const reopened = await openDatabase({ databaseUrl: null, dataDir });
    try {
      const rows = await reopened.db.select({ id: scans.id, status: scans.status }).from(scans).where(inArray(scans.id, [scanA, scanB]));
      assert.equal(rows.find((r) => r.id === scanA)?.status, 'completed');
      assert.ok(rows.some((r) => r.id === scanB), 'the upload answered during the shutdown was lost');
      const states = await reopened.db.select({ scanId: analyses.scanId, status: analyses.status }).from(analyses);
      assert.deepEqual(states.filter((a) => a.status === 'active'), [], 'an analysis was abandoned midway');
      assert.ok(['queued', 'completed'].includes(states.find((a) => a.scanId === scanB)?.status ?? ''), JSON.stringify(states));
    } finally {
      await reopened.close();
    }
  } finally {
    if (server && server.process.exitCode === null && server.process.signalCode === null) {
      server.process.kill('SIGKILL');
      await server.exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  }
});
