/**
 * Graceful shutdown as server.ts runs it on SIGTERM: app.close() (stop accepting, finish
 * in-flight requests), then runtime.stop() (let running jobs finish), then the database; and
 * what happens when those steps overrun. test/deployment/shutdown.test.ts stops the real
 * process (`npm start`) the same way.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { eq } from 'drizzle-orm';
import { FEATURES, type BuildOptions } from '../app.js';
import { heatmapMap, uploadRequest } from '../scans/test-support.js';
import { gliomaOutput } from '../../test/helpers/analyzer-output.js';
import { createTestApp, type TestApp } from '../../test/helpers/app.js';
import { REPO_ROOT } from './config.js';
import { openDatabase } from './db/index.js';
import { analyses } from './db/schema.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The app with `GET /test/slow`, answered after a second: a request still in flight when the server closes. */
const withSlowRoute = (): BuildOptions => ({
  features: [
    ...FEATURES,
    {
      prefix: '',
      routes: () => async (app) => {
        app.get('/test/slow', { config: { rateLimit: false } }, async () => {
          await sleep(1_000);
          return { done: true };
        });
      },
    },
  ],
});

/** A new doctor's upload of a small grey brain MRI stand-in; its analysis is queued. */
async function uploadScan(t: TestApp, patientName: string) {
  const doctor = await t.user();
  const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 80, g: 80, b: 80 } } })
    .jpeg()
    .toBuffer();
  const up = await t.app.inject(uploadRequest(doctor, { data: jpeg, fields: { patientId: `SD-${Date.now()}`, patientName, scanType: 'brain-mri' } }));
  assert.equal(up.statusCode, 201);
  return { doctor, scanId: up.json<{ _id: string }>()._id };
}

test('SIGTERM steps: an in-flight request is answered and a running analysis completes before the process ends', async () => {
  let analysisStarted = false;
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const t = await createTestApp('pglite', {
    worker: true,
    analyzer: {
      async analyze(_type, _png, onStage) {
        analysisStarted = true;
        await onStage('inference');
        await held;
        return {
          ...gliomaOutput({ model: { id: 'brain-mri', version: 'test' }, hotRegion: { x: 0, y: 0, width: 1, height: 1 } }),
          heatmapMap: heatmapMap(),
        };
      },
    },
    build: withSlowRoute,
  });
  let closed = false;
  try {
    const { scanId } = await uploadScan(t, 'Shutdown Test');
    const deadline = Date.now() + 30_000;
    while (!analysisStarted && Date.now() < deadline) await sleep(20);
    assert.ok(analysisStarted, 'the analysis never started');

    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (t.app.server.address() as { port: number }).port;
    const inFlight = fetch(`http://127.0.0.1:${port}/test/slow`).then(async (r) => ({ status: r.status, body: await r.json() }));
    await sleep(200);

    // What onShutdown runs, in its order.
    await t.app.close();
    // The analysis is still running (held until now): stopping must wait for it.
    const stopping = t.runtime.stop();
    release();
    await stopping;
    closed = true;
    // Read at once: the database is still open, the queue and its workers are stopped.
    const [row] = await t.database.db.select({ status: analyses.status }).from(analyses).where(eq(analyses.scanId, scanId));
    assert.equal(row?.status, 'completed', 'the running analysis was abandoned by the shutdown');
    assert.deepEqual(await inFlight, { status: 200, body: { done: true } });
  } finally {
    if (!closed) await t.close();
    else await t.database.destroy();
  }
});

test('closing the server ends the live status streams at once, instead of waiting for their scans to finish', { timeout: 120_000 }, async () => {
  // No worker: the scan stays queued (processing), so its stream would stay open for minutes.
  const t = await createTestApp('pglite');
  let closed = false;
  try {
    const { doctor, scanId } = await uploadScan(t, 'Stream Test');

    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (t.app.server.address() as { port: number }).port;
    const res = await fetch(`http://127.0.0.1:${port}/api/scans/events?ids=${scanId}`, { headers: doctor.auth });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value);
    assert.match(first, /event: status\ndata: .*"status":"processing"/);

    const started = Date.now();
    await t.app.close();
    closed = true;
    assert.ok(Date.now() - started < 5_000, `app.close() waited ${Date.now() - started} ms for the stream`);
    let rest = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    // Closed without `end`: the browser reconnects (and follows the scan on the restarted server).
    assert.doesNotMatch(rest, /event: end/);
  } finally {
    if (!closed) await t.app.close();
    await t.runtime.stop();
    await t.database.destroy();
  }
});

test('a request arriving on a kept-alive connection while the server closes: 503 {"error"} with Retry-After, the connection closed', { timeout: 120_000 }, async () => {
  const t = await createTestApp('pglite', { build: withSlowRoute });
  let closed = false;
  try {
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (t.app.server.address() as { port: number }).port;
    // One connection, two pipelined requests: the second arrives once the server is closing.
    const socket = connect(port, '127.0.0.1');
    let received = '';
    socket.on('data', (d: Buffer) => (received += d.toString()));
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write('GET /test/slow HTTP/1.1\r\nHost: x\r\n\r\n');
    await sleep(200);
    const closing = t.app.close();
    await sleep(50);
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await closing;
    closed = true;
    await ended;
    const [slow, refused] = received.split(/(?=HTTP\/1\.1 )/);
    assert.match(slow!, /^HTTP\/1\.1 200/, 'the request in flight is answered');
    assert.match(refused!, /^HTTP\/1\.1 503/, received);
    assert.match(refused!, /\r\nretry-after: 5\r\n/i);
    assert.match(refused!, /\r\nconnection: close\r\n/i);
    assert.match(refused!, /\{"error":"The server is shutting down: send the request again"\}$/);
  } finally {
    if (!closed) await t.app.close();
    await t.runtime.stop();
    await t.database.destroy();
  }
});

test('steps that overrun the time allowed: a second signal is only logged, the database is closed, exit 1, PGlite opens again', async () => {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'imagemedix-forced-exit-'));
  try {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/helpers/stuck-shutdown.ts'), dataDir], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const deadline = Date.now() + 60_000;
    while (!out.includes('writing') && Date.now() < deadline && child.exitCode === null) await sleep(20);
    assert.ok(out.includes('writing'), out);

    child.kill('SIGTERM');
    await sleep(300);
    child.kill('SIGINT');
    assert.equal(await exited, 1, out);
    assert.match(out, /already shutting down/);
    assert.match(out, /shutdown took too long; closing the database/);

    // PGlite was closed (an exit without close leaves its postmaster.pid behind), and the rows
    // written up to the forced exit are there, in a directory that opens and takes writes.
    assert.equal(existsSync(path.join(dataDir, 'pgdata', 'postmaster.pid')), false, 'the forced exit left PGlite open');
    const reopened = await openDatabase({ databaseUrl: null, dataDir });
    try {
      const { rows } = await reopened.executor.executeSql('select count(*)::int as n from shutdown_writes');
      assert.ok((rows[0] as { n: number }).n > 0);
      await reopened.executor.executeSql('insert into shutdown_writes default values');
    } finally {
      await reopened.close();
    }
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});
