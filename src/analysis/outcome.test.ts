/**
 * The end of an analysis: its row, its scan's status and the scan's webhook deliveries commit
 * together and once, in one statement when no webhook receives the event.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { sql, type SQL } from 'drizzle-orm';
import { REPO_ROOT } from '../platform/config.js';
import { pendingJobs, type JobCompletion } from '../platform/queue/index.js';
import { ANALYZE_SCAN_JOB } from './job-name.js';
import { WEBHOOK_DELIVERY_JOB } from '../webhooks/deliver.job.js';
import type { EventPublisher, ScanEvent } from '../webhooks/types.js';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { multipart } from '../../test/helpers/multipart.js';
import { endAnalysis, failAnalysis } from './outcome.js';
import * as repo from './repository.js';

const JPEG = readFileSync(path.join(REPO_ROOT, 'test/fixtures/images/brain-glioma-1.jpg'));

/** An uploaded scan and its analysis, claimed by the job's first try. */
async function claimedScan(t: TestApp, user: TestUser) {
  const body = multipart({
    image: { filename: 'scan.jpg', contentType: 'image/jpeg', data: JPEG },
    patientId: uniqueId(),
    patientName: 'Outcome Patient',
    scanType: 'brain-mri',
  });
  const res = await t.app.inject({ method: 'POST', url: '/api/scans', ...body, headers: { ...body.headers, ...user.auth } });
  assert.equal(res.statusCode, 201, res.body);
  const scan = res.json<{ _id: string; patientId: string }>();
  const analysis = await repo.pendingAnalysisOf(t.ctx.db, scan._id);
  assert.ok(analysis);
  const claimed = await repo.claimAnalysis(t.ctx.db, analysis.id, 1, 10);
  assert.ok(claimed);
  return { scanId: scan._id, analysisId: analysis.id, patientId: claimed.patientId };
}

/** The real publisher, with the events it was asked to publish (and a failure on demand). */
function recording(inner: EventPublisher) {
  const published: ScanEvent[] = [];
  let failNext = false;
  const events: EventPublisher = {
    async publish(tx, event) {
      if (failNext) {
        failNext = false;
        throw new Error('delivery queue down');
      }
      published.push(event);
      await inner.publish(tx, event);
    },
    hasSubscribers: (db, event) => inner.hasSubscribers(db, event),
    deliveryRecords: (db, patientId, newPatientOwner, value) => inner.deliveryRecords(db, patientId, newPatientOwner, value),
    deliveryValues: (event) => inner.deliveryValues(event),
  };
  return { events, published, failNextPublish: () => (failNext = true) };
}

const completion = (s: { scanId: string; analysisId: string }, attempt: number) => ({
  analysisId: s.analysisId,
  attempt,
  analysis: { status: 'completed' as const, progress: 100, durationMs: 5, completedAt: new Date() },
  scanId: s.scanId,
  scan: { status: 'completed' as const, currentAnalysisId: s.analysisId, failureReason: null },
});

/**
 * The analysis job's completion as the queue hands it to a try (here on the job the upload
 * queued, not yet fetched): its statement in placeholders, as the queue's, so the end's form is built once.
 */
/** The job's completion, one builder for every test (as the queue's): a built form is known by its builder. */
const completeAnalysisJob = (when: SQL<boolean>) =>
  sql`update pgboss.job set state = 'completed', completed_on = now()
       where name = ${ANALYZE_SCAN_JOB} and data->>'analysisId' = ${sql.placeholder('jobAnalysisId')} and state < 'completed' and (${when}) returning id`;

function jobOf(t: TestApp, s: { analysisId: string }) {
  const calls: string[] = [];
  const job: JobCompletion = {
    prepared: { statement: completeAnalysisJob, values: { jobAnalysisId: s.analysisId } },
    completed: () => calls.push('completed'),
  };
  const state = async () =>
    ((await pendingJobs(t.ctx.db, ANALYZE_SCAN_JOB, { field: 'analysisId', value: s.analysisId })).length > 0 ? 'pending' : 'completed');
  return { job, calls, state };
}

const statusOf = async (t: TestApp, s: { scanId: string; analysisId: string }) => ({
  scan: (await repo.findScanForAnalysis(t.ctx.db, s.scanId))?.status,
  analysis: (await repo.latestAnalysisOf(t.ctx.db, s.scanId))?.status,
});

for (const kind of await databaseKinds()) {
  describe(`the end of an analysis (${kind})`, () => {
    test('without a webhook for the event: written at once, by the try that owns it, only once', async () => {
      const t = await createTestApp(kind);
      try {
        const doc = await t.user();
        const s = await claimedScan(t, doc);
        const { events, published } = recording(t.ctx.events);
        const event: ScanEvent = { type: 'scan.analyzed', scanId: s.scanId, patientId: s.patientId, status: 'completed' };
        const { job, calls, state } = jobOf(t, s);

        assert.equal(await endAnalysis(t.ctx.db, events, { ...completion(s, 2), job }, event), false, 'a try that does not own it writes nothing');
        assert.deepEqual(await statusOf(t, s), { scan: 'processing', analysis: 'active' });
        assert.equal(await state(), 'pending', 'nor completes the job');
        assert.deepEqual(calls, []);

        assert.equal(await endAnalysis(t.ctx.db, events, { ...completion(s, 1), job }, event), true);
        assert.deepEqual(await statusOf(t, s), { scan: 'completed', analysis: 'completed' });
        assert.equal(await state(), 'completed', 'the job is completed in the same commit');
        assert.deepEqual(calls, ['completed']);
        assert.deepEqual(published, [], 'nobody subscribes: nothing to publish');

        // The reconciler's failure, or a retry, after the end: nothing changes.
        assert.equal(await failAnalysis(t.ctx.db, events, { ...s, reason: 'lost', refused: false }), false);
        assert.deepEqual(await statusOf(t, s), { scan: 'completed', analysis: 'completed' });
      } finally {
        await t.close();
      }
    });

    test("an outcome's statement is built once and each analysis ends with its own values", async () => {
      const t = await createTestApp(kind);
      try {
        const doc = await t.user();
        const [s1, s2] = [await claimedScan(t, doc), await claimedScan(t, doc)];
        const { events } = recording(t.ctx.events);
        let built = 0;
        const counting: EventPublisher = { ...events, hasSubscribers: (db, e) => (built++, events.hasSubscribers(db, e)) };
        const end = (s: typeof s1, durationMs: number) => {
          const { job } = jobOf(t, s);
          const c = completion(s, 1);
          const event: ScanEvent = { type: 'scan.analyzed', scanId: s.scanId, patientId: s.patientId, status: 'completed' };
          return endAnalysis(t.ctx.db, counting, { ...c, analysis: { ...c.analysis, durationMs }, job }, event);
        };
        assert.equal(await end(s1, 5), true);
        const afterFirst = built;
        assert.equal(await end(s2, 7), true);
        assert.equal(built, afterFirst, 'the second analysis reuses the statement built for the first');
        assert.deepEqual(await statusOf(t, s1), { scan: 'completed', analysis: 'completed' });
        assert.deepEqual(await statusOf(t, s2), { scan: 'completed', analysis: 'completed' });
        assert.equal((await repo.latestAnalysisOf(t.ctx.db, s1.scanId))?.durationMs, 5);
        assert.equal((await repo.latestAnalysisOf(t.ctx.db, s2.scanId))?.durationMs, 7);
        assert.equal(await jobOf(t, s1).state(), 'completed');
        assert.equal(await jobOf(t, s2).state(), 'completed');
        assert.equal(await end(s2, 9), false, 'ended once');
        assert.equal((await repo.latestAnalysisOf(t.ctx.db, s2.scanId))?.durationMs, 7);
      } finally {
        await t.close();
      }
    });

    test('with a webhook for the event: the delivery is queued in the same commit, or nothing is written', async () => {
      const t = await createTestApp(kind);
      try {
        const doc = await t.user();
        const hook = await t.app.inject({
          method: 'POST',
          url: '/api/webhooks',
          headers: doc.auth,
          payload: { url: 'http://127.0.0.1:9/hook', events: ['scan.failed'] },
        });
        assert.equal(hook.statusCode, 201, hook.body);
        const s = await claimedScan(t, doc);
        const { events, published, failNextPublish } = recording(t.ctx.events);
        const { job, calls, state } = jobOf(t, s);
        const failure = { ...s, reason: 'Analysis failed after several attempts', refused: false, attempt: 1, job };
        const deliveries = async () =>
          (await pendingJobs(t.ctx.db, WEBHOOK_DELIVERY_JOB, { field: 'eventType', value: 'scan.failed' })).filter((j) =>
            (j.data as { body: string }).body.includes(s.scanId),
          );

        failNextPublish();
        await assert.rejects(failAnalysis(t.ctx.db, events, failure), /delivery queue down/);
        assert.deepEqual(await statusOf(t, s), { scan: 'processing', analysis: 'active' }, 'no result without its event');
        assert.equal((await deliveries()).length, 0);
        assert.equal(await state(), 'pending', 'nor the job completed');

        assert.equal(await failAnalysis(t.ctx.db, events, failure), true);
        assert.deepEqual(await statusOf(t, s), { scan: 'failed', analysis: 'failed' });
        assert.equal((await deliveries()).length, 1);
        assert.equal(await state(), 'completed');
        assert.deepEqual(calls, ['completed']);

        assert.equal(await failAnalysis(t.ctx.db, events, failure), false);
        assert.equal((await deliveries()).length, 1, 'one delivery per event');
        assert.deepEqual(calls, ['completed'], 'completed once');
        assert.equal(published.length, 1);
      } finally {
        await t.close();
      }
    });
  });
}
