/**
 * An upload for a patient on record is one statement (repository insertUploadInOneStatement, group-committed by insertUploadGrouped):
 * it must write what the upload's transaction writes (scan, analysis, job with its wake-up,
 * webhook deliveries), to the same people, and nothing at all when it refuses.
 */
import assert from 'node:assert/strict';
import { readdir, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import path from 'node:path';
import { describe, test } from 'node:test';
import { and, asc, eq, inArray } from 'drizzle-orm';
import { AnalyzeScanPayloadSchema } from '../analysis/analyze.job.js';
import { ANALYZE_SCAN_JOB } from '../analysis/job-name.js';
import { latestAnalysisOf } from '../analysis/repository.js';
import type { JobDefinition } from '../platform/queue/index.js';
import { WEBHOOK_DELIVERY_JOB } from '../webhooks/deliver.job.js';
import { WebhookDeliveryPayloadSchema } from '../webhooks/types.js';
import { uniqueId, useTestApp, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { FIXTURES, uploadRequest } from './test-support.js';
import { auditEvents } from '../platform/db/schema.js';

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));
const readdirAsync = promisify(readdir);

/** Only what `take` reads of a job: its queue and payload. */
const queued = <S extends JobDefinition['payload']>(name: string, payload: S) => ({ name, payload }) as unknown as JobDefinition<S>;
const analyzeJob = queued(ANALYZE_SCAN_JOB, AnalyzeScanPayloadSchema);
const deliveryJob = queued(WEBHOOK_DELIVERY_JOB, WebhookDeliveryPayloadSchema);

for (const kind of await databaseKinds()) {
  describe(`upload for a patient on record, in one statement (${kind})`, () => {
    let t: TestApp;
    let doctor: TestUser;
    useTestApp(kind, {
      async setup(app) {
        t = app;
        doctor = await t.user();
      },
    });

    const upload = (user: TestUser, fields: Record<string, string>) => t.app.inject(uploadRequest(user, { data: JPEG, fields }));
    const subscribe = async (owner: TestUser, tag: string) => {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/webhooks',
        headers: owner.auth,
        payload: { url: `http://127.0.0.1:9/${tag}`, events: ['scan.uploaded'] },
      });
      assert.equal(res.statusCode, 201, res.body);
      return res.json<{ _id: string }>()._id;
    };

    test('writes the scan, its analysis and its job, woken by NOTIFY at commit, and the deliveries publish would queue', async () => {
      const patient = await t.patient(doctor, { name: 'Ana Lima' });
      const otherDoctor = await t.user();
      const admin = await t.user({ role: 'admin' });
      const mine = await subscribe(doctor, 'mine');
      const foreign = await subscribe(otherDoctor, 'foreign');
      const adminHook = await subscribe(admin, 'admin');
      const woken: string[] = [];
      const unlisten = await t.ctx.database.listen('imagemedix_jobs', { onNotify: (queue) => woken.push(queue) });
      try {
        const res = await upload(doctor, { patientId: patient.patientId });
        assert.equal(res.statusCode, 201, res.body);
        const scan = res.json<{ _id: string; patientId: string; patientName: string; status: string }>();
        assert.equal(scan.patientId, patient.patientId);
        assert.equal(scan.patientName, 'Ana Lima');
        assert.equal(scan.status, 'processing');

        const analysis = await latestAnalysisOf(t.ctx.db, scan._id);
        assert.equal(analysis?.status, 'queued');
        const jobs = (await t.runtime.queue.take(analyzeJob, 100)).filter((j) => j.scanId === scan._id);
        assert.deepEqual(jobs, [{ scanId: scan._id, analysisId: analysis.id }], 'one analysis job, naming the analysis row');
        for (let i = 0; i < 50 && !(woken.includes(ANALYZE_SCAN_JOB) && woken.includes(WEBHOOK_DELIVERY_JOB)); i++) {
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.ok(woken.includes(ANALYZE_SCAN_JOB), 'the analysis workers are woken');
        assert.ok(woken.includes(WEBHOOK_DELIVERY_JOB), 'the delivery workers are woken');

        const deliveries = (await t.runtime.queue.take(deliveryJob, 100)).filter((d) => d.body.includes(scan._id));
        const byHook = new Map(deliveries.map((d) => [d.webhookId, d]));
        assert.deepEqual([...byHook.keys()].sort(), [mine, adminHook].sort(), "the patient's doctor's and the admin's webhooks, not another doctor's");
        assert.equal(byHook.get(foreign), undefined);
        const [first, second] = deliveries;
        assert.match(first!.messageId, /^msg_[A-Za-z0-9_-]{24}$/);
        assert.notEqual(first!.messageId, second!.messageId, 'a message id per webhook');
        assert.equal(first!.eventType, 'scan.uploaded');
        assert.equal(first!.patientId, patient._id);
        const body = JSON.parse(first!.body) as { type: string; timestamp: string; data: unknown };
        assert.deepEqual(Object.keys(body), ['type', 'timestamp', 'data']);
        assert.equal(body.type, 'scan.uploaded');
        assert.ok(Math.abs(Date.parse(body.timestamp) - Date.now()) < 60_000);
        assert.deepEqual(body.data, { scanId: scan._id, patientId: patient._id, status: 'processing' });
        assert.equal(first!.body, second!.body, 'every webhook gets the same bytes');
      } finally {
        await unlisten();
      }
    });

    test("a new patient is created with the scan, assigned to the uploader: in their list, not in another doctor's", async () => {
      const uploader = await t.user();
      const other = await t.user();
      const patientId = uniqueId();
      const res = await upload(uploader, { patientId, patientName: 'Lea Novak' });
      assert.equal(res.statusCode, 201, res.body);
      const scan = res.json<{ _id: string; patientId: string; patientName: string }>();
      assert.deepEqual([scan.patientId, scan.patientName], [patientId, 'Lea Novak']);
      const patient = await t.app.inject({ url: `/api/patients/${patientId}`, headers: uploader.auth });
      assert.equal(patient.statusCode, 200, patient.body);
      assert.equal(patient.json().name, 'Lea Novak');
      const list = await t.app.inject({ url: '/api/scans', headers: uploader.auth });
      assert.deepEqual(
        list.json<{ scans: Array<{ _id: string }> }>().scans.map((s) => s._id),
        [scan._id],
        "the uploader's list has the scan (scan_access, kept by the scans trigger)",
      );
      assert.equal((await t.app.inject({ url: `/api/patients/${patientId}`, headers: other.auth })).statusCode, 404);
      assert.equal((await t.app.inject({ url: '/api/scans', headers: other.auth })).json().totalScans, 0);
      const again = await upload(uploader, { patientId });
      assert.equal(again.statusCode, 201, 'the next scan finds the patient');
      assert.equal((await upload(other, { patientId, patientName: 'Lea Novak' })).statusCode, 409, "another doctor's now");
    });

    test("a new patient's first scan is announced to the uploader's and the admins' webhooks, not another doctor's", async () => {
      const uploader = await t.user();
      const other = await t.user();
      const admin = await t.user({ role: 'admin' });
      const mine = await subscribe(uploader, 'new-mine');
      const foreign = await subscribe(other, 'new-foreign');
      const adminHook = await subscribe(admin, 'new-admin');
      const res = await upload(uploader, { patientId: uniqueId(), patientName: 'Ines Duarte' });
      assert.equal(res.statusCode, 201, res.body);
      const scan = res.json<{ _id: string }>();
      const deliveries = (await t.runtime.queue.take(deliveryJob, 100)).filter((d) => d.body.includes(scan._id));
      // (Earlier tests' admins have webhooks too: every admin sees every patient.)
      const hooks = deliveries.map((d) => d.webhookId).filter((id) => [mine, foreign, adminHook].includes(id));
      assert.deepEqual(hooks.sort(), [mine, adminHook].sort(), 'the statement cannot see the assignment it makes, yet the uploader is told');
      assert.ok(deliveries.every((d) => d.eventType === 'scan.uploaded'));
    });

    test("another doctor's patient: 409 as before, and no row, job or file is left", async () => {
      const owner = await t.user();
      const patient = await t.patient(owner, { name: 'Sara Kim' });
      const scansDir = path.join(t.dataDir, 'files/scans');
      // Files, in any folder (scans/<shard>/<scan id>.<name>).
      const storedFiles = async () =>
        (await readdirAsync(scansDir, { recursive: true, withFileTypes: true }).catch(() => [])).filter((f) => f.isFile()).length;
      const filesBefore = await storedFiles();
      await t.runtime.queue.take(analyzeJob, 1000);
      const res = await upload(doctor, { patientId: patient.patientId });
      assert.equal(res.statusCode, 409, res.body);
      assert.match(res.json().error, /already in use/);
      assert.equal(await storedFiles(), filesBefore, 'the stored file is removed');
      const detail = (await t.app.inject({ url: `/api/patients/${patient._id}`, headers: owner.auth })).json<{ scans: unknown[] }>();
      assert.deepEqual(detail.scans, [], 'no scan row');
      assert.deepEqual(await t.runtime.queue.take(analyzeJob, 100), [], 'no analysis job');
    });

    test('its audit events (the upload, the links it issued) are committed with it, as the hook recorded them, and not again', async () => {
      const onRecord = await t.patient(doctor, { name: 'Ana Lima' });
      const byRowId = await t.patient(doctor, { name: 'Ivo Reis' });
      const hookWrites: string[] = [];
      const audit = t.ctx.audit;
      t.ctx.audit = {
        write: async (rows) => {
          hookWrites.push(...rows.map((r) => `${r.action} ${r.resourceId}`));
          await audit.write(rows);
        },
      };
      try {
        const cases: Array<{ fields: Record<string, string>; patient: (() => string) | null }> = [
          // A patient on record and a new one: the one statement.
          { fields: { patientId: onRecord.patientId }, patient: () => onRecord._id },
          { fields: { patientId: uniqueId(), patientName: 'Noor Haddad' }, patient: null },
          // A patient by `_id`: the transaction.
          { fields: { patientId: byRowId._id }, patient: () => byRowId._id },
        ];
        for (const { fields, patient } of cases) {
          const res = await upload(doctor, fields);
          assert.equal(res.statusCode, 201, res.body);
          const scan = res.json<{ _id: string; patientId: string }>();
          const patientRowId =
            patient?.() ?? (await t.app.inject({ url: `/api/patients/${scan.patientId}`, headers: doctor.auth })).json<{ _id: string }>()._id;
          const rows = await t.ctx.db
            .select()
            .from(auditEvents)
            .where(and(eq(auditEvents.resourceId, scan._id), inArray(auditEvents.action, ['scan.upload', 'link.issue'])))
            .orderBy(asc(auditEvents.action));
          const common = { actorId: doctor.id, actorRole: 'doctor', resourceType: 'scan', resourceId: scan._id, patientIds: [patientRowId], outcome: 'success', statusCode: 201 };
          assert.deepEqual(
            rows.map(({ action, actorId, actorRole, resourceType, resourceId, patientIds, outcome, statusCode, detail, ip }) => ({
              action, actorId, actorRole, resourceType, resourceId, patientIds, outcome, statusCode, detail, ip,
            })),
            [
              { action: 'link.issue', ...common, detail: { via: 'scan.upload', scans: 1, kinds: ['image', 'thumbnail'], expiresInSeconds: t.ctx.config.signedUrlTtlSeconds }, ip: '127.0.0.1' },
              { action: 'scan.upload', ...common, detail: null, ip: '127.0.0.1' },
            ],
            JSON.stringify(fields),
          );
          assert.deepEqual(hookWrites.filter((w) => w.endsWith(scan._id)), [], 'the hook writes them no more');
        }
      } finally {
        t.ctx.audit = audit;
      }
    });

    test('uploads at once are committed together, and one the database refuses fails alone: the others are stored and answered 201', async () => {
      const uploader = await t.user();
      const patient = await t.patient(uploader, { name: 'Ana Lima' });
      const events = t.ctx.events;
      let calls = 0;
      // The fourth upload's statement fails after its inserts (a body its database refuses: the
      // NUL), inside the transaction it shares with uploads that arrived with it.
      t.ctx.events = {
        ...events,
        deliveryValues: (event) => ({ ...events.deliveryValues(event), ...(++calls === 4 ? { event_body_head: 'refused\u0000' } : {}) }),
      };
      let answers: Array<{ statusCode: number; body: string }>;
      try {
        answers = await Promise.all(Array.from({ length: 8 }, () => upload(uploader, { patientId: patient.patientId })));
      } finally {
        t.ctx.events = events;
      }
      assert.deepEqual(answers.map((a) => a.statusCode).sort(), [201, 201, 201, 201, 201, 201, 201, 500], answers.map((a) => a.body).join('\n'));
      const stored = answers.filter((a) => a.statusCode === 201).map((a) => JSON.parse(a.body) as { _id: string });
      for (const scan of stored) {
        assert.equal((await t.app.inject({ url: `/api/scans/${scan._id}`, headers: uploader.auth })).statusCode, 200, 'each answered upload is stored');
      }
      const detail = (await t.app.inject({ url: `/api/patients/${patient._id}`, headers: uploader.auth })).json<{ scans: Array<{ _id: string }> }>();
      assert.deepEqual(detail.scans.map((s) => s._id).sort(), stored.map((s) => s._id).sort(), 'no scan row for the refused one');
      const jobs = (await t.runtime.queue.take(analyzeJob, 1000)).filter((j) => stored.some((s) => s._id === j.scanId));
      assert.equal(jobs.length, 7, 'one analysis job per stored scan');
      const audited = await t.ctx.db
        .select()
        .from(auditEvents)
        .where(and(eq(auditEvents.actorId, uploader.id), eq(auditEvents.action, 'scan.upload')));
      assert.deepEqual(audited.map((r) => r.statusCode).sort(), [201, 201, 201, 201, 201, 201, 201, 500], 'one event per answer');
    });

    test('an answer other than the 201 committed in advance (a failure after the commit) is recorded as well, once', async () => {
      const uploader = await t.user();
      const patient = await t.patient(uploader, { name: 'Ana Lima' });
      const hookWrites: string[] = [];
      const { audit, signer } = t.ctx;
      t.ctx.audit = {
        write: async (rows) => {
          hookWrites.push(...rows.map((r) => `${r.action} ${r.statusCode}`));
          await audit.write(rows);
        },
      };
      // The scan's links are signed after its statement committed: signing fails, the answer is a 500.
      t.ctx.signer = { ...signer, sign: () => { throw new Error('signing failed'); } };
      try {
        const res = await upload(uploader, { patientId: patient.patientId });
        assert.equal(res.statusCode, 500, res.body);
      } finally {
        t.ctx.audit = audit;
        t.ctx.signer = signer;
      }
      const rows = await t.ctx.db
        .select()
        .from(auditEvents)
        .where(and(eq(auditEvents.actorId, uploader.id), inArray(auditEvents.action, ['scan.upload', 'link.issue'])))
        .orderBy(asc(auditEvents.statusCode), asc(auditEvents.action));
      assert.deepEqual(
        rows.map(({ action, statusCode, outcome, patientIds }) => ({ action, statusCode, outcome, patientIds })),
        [
          // Committed with the scan, as foreseen...
          { action: 'link.issue', statusCode: 201, outcome: 'success', patientIds: [patient._id] },
          { action: 'scan.upload', statusCode: 201, outcome: 'success', patientIds: [patient._id] },
          // ...and the answer the client got, written by the hook.
          { action: 'scan.upload', statusCode: 500, outcome: 'error', patientIds: [patient._id] },
        ],
      );
      assert.deepEqual(hookWrites, ['scan.upload 500'], 'the hook writes the answer given, and only it');
    });
  });
}
