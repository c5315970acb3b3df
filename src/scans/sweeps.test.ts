/**
 * The shape both storage sweeps share (sweeps.ts): the cut-off each is given, the one line it
 * logs of what it removed, a skipped interval that logs no sweep, and a failure that fails the job.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { captureLog } from '../../test/helpers/log-capture.js';
import type { Db } from '../platform/db/index.js';
import { createLocalStorage } from '../platform/storage/index.js';
import { sweepOrphanFilesJob } from './sweep-orphan-files.job.js';
import { sweepPartialUploadsJob } from './sweep-partial-uploads.job.js';
import { sweepJob } from './sweeps.js';

const dir = mkdtempSync(path.join(tmpdir(), 'imagemedix-sweeps-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const now = Date.parse('2026-12-06T12:00:00Z');

test('each sweep logs what it removed and its cut-off (now less its age), once, and is retried and expired alike', async () => {
  const storage = createLocalStorage(dir);
  // Empty storage: the orphan sweep has no scan id to ask the database about.
  const jobs = [
    { job: sweepPartialUploadsJob({ storage, ageMinutes: 90, now: () => now }), swept: 'partial uploads swept', olderThan: '2026-12-06T10:30:00.000Z' },
    { job: sweepOrphanFilesJob({ db: {} as Db, storage, ageHours: 24, now: () => now }), swept: 'files without a scan swept', olderThan: '2026-12-05T12:00:00.000Z' },
  ];
  for (const { job, swept, olderThan } of jobs) {
    const captured = captureLog('info');
    await job.handler({}, { jobId: 'j', attempt: 1, log: captured.log });
    assert.deepEqual(
      captured.entries().map((e) => [e.level, e.msg, e.removed, e.olderThan]),
      [[30, swept, 0, olderThan]],
    );
    assert.deepEqual([job.retryLimit, job.retryDelaySeconds, job.retryBackoff, job.expireInSeconds], [2, 60, true, 900], job.name);
  }
});

test('a sweep skipped for the interval logs no sweep; one that throws fails the job (pg-boss retries it)', async () => {
  const captured = captureLog('info');
  const skipped = sweepJob({ name: 'test.sweep', ageMs: 1, swept: 'swept', sweep: async () => null });
  await skipped.handler({}, { jobId: 'j', attempt: 1, log: captured.log });
  assert.deepEqual(captured.entries(), []);
  const failing = sweepJob({ name: 'test.sweep', ageMs: 1, swept: 'swept', sweep: () => Promise.reject(new Error('store down')) });
  await assert.rejects(failing.handler({}, { jobId: 'j', attempt: 1, log: captured.log }), /store down/);
  assert.deepEqual(captured.entries(), []);
});
