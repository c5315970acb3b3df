/**
 * Graceful shutdown as server.ts runs it on SIGTERM: app.close() (stop accepting, finish
 * in-flight requests), then runtime.stop() (let running jobs finish), then the database.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { eq } from 'drizzle-orm';
import { FEATURES } from '../app.js';
import { uploadRequest } from '../scans/test-support.js';
import { gliomaOutput } from '../../test/helpers/analyzer-output.js';
import { createTestApp } from '../../test/helpers/app.js';
import { analyses } from './db/schema.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
          heatmapPng: await sharp({ create: { width: 8, height: 8, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
            .png()
            .toBuffer(),
        };
      },
    },
    build: () => ({
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
    }),
  });
  let closed = false;
  try {
    const doctor = await t.user();
    const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 80, g: 80, b: 80 } } })
      .jpeg()
      .toBuffer();
    const up = await t.app.inject(
      uploadRequest(doctor, { data: jpeg, fields: { patientId: `SD-${Date.now()}`, patientName: 'Shutdown Test', scanType: 'brain-mri' } }),
    );
    assert.equal(up.statusCode, 201);
    const scanId = up.json<{ _id: string }>()._id;
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
