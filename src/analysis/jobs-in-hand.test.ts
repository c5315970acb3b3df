/**
 * A worker holds two analysis jobs per analyzer thread (src/runtime.ts), so the next job's
 * fetch, claim and image read overlap the running analysis instead of following it: with
 * WORKER_CONCURRENCY=1, a second scan's analysis is handed to the analyzer while the first
 * one's is still running (the real analyzer queues it behind its one thread).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Analyzer } from './analyze.job.js';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { gliomaOutput } from '../../test/helpers/analyzer-output.js';
import { FIXTURES, heatmapMap, uploadRequest } from '../scans/test-support.js';

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('analysis jobs in hand per analyzer thread', () => {
  let t: TestApp;
  let doctor: TestUser;
  let running = 0;
  let mostAtOnce = 0;
  let bothIn: () => void = () => undefined;
  const twoRunning = new Promise<void>((resolve) => (bothIn = resolve));

  before(async () => {
    const map = heatmapMap();
    // Each analysis waits until a second one has arrived (or 5 s have passed): one job per
    // thread would hand the second scan over only after the first one's end.
    const analyzer: Analyzer = {
      async analyze() {
        running++;
        mostAtOnce = Math.max(mostAtOnce, running);
        if (running === 2) bothIn();
        await Promise.race([twoRunning, sleep(5_000)]);
        running--;
        return { ...gliomaOutput(), heatmapMap: map };
      },
    };
    t = await createTestApp('pglite', { worker: true, analyzer, env: { WORKER_CONCURRENCY: '1' } });
    doctor = await t.user();
  });
  after(() => t.close());

  test('with one analyzer thread, a second scan reaches the analyzer while the first is analysed', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const res = await t.app.inject(uploadRequest(doctor, { data: JPEG, fields: { patientId: uniqueId(), patientName: 'Ada Lovelace', scanType: 'brain-mri' } }));
      assert.equal(res.statusCode, 201, res.body);
      ids.push(res.json<{ _id: string }>()._id);
    }
    for (const id of ids) {
      for (let i = 0; ; i++) {
        const status = (await t.app.inject({ url: `/api/scans/${id}`, headers: doctor.auth })).json<{ status: string }>().status;
        if (status === 'completed') break;
        assert.ok(i < 200, `scan ${id} still ${status}`);
        await sleep(50);
      }
    }
    assert.equal(mostAtOnce, 2);
  });
});
