/**
 * A DICOM file as the whole body (`POST /api/scans`, `Content-Type: application/dicom`): the
 * patient from its header, the same access rules, checks and answers as the multipart form, the
 * scan, its analysis job and its audit events committed together, and nothing left behind by a
 * refusal.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, test } from 'node:test';
import { and, eq, inArray } from 'drizzle-orm';
import { uniqueId, useTestApp, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { AnalyzeScanPayloadSchema } from '../analysis/analyze.job.js';
import { ANALYZE_SCAN_JOB } from '../analysis/job-name.js';
import type { JobDefinition } from '../platform/queue/index.js';
import { syntheticImage } from '../imaging/testing/dicom-writer.js';
import { auditEvents, scans } from '../platform/db/schema.js';
import { FIXTURES, uploadRequest } from './test-support.js';

/** Only what `take` reads of a job: its queue and payload. */
const analyzeJob = { name: ANALYZE_SCAN_JOB, payload: AnalyzeScanPayloadSchema } as unknown as JobDefinition<typeof AnalyzeScanPayloadSchema>;

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));

/** A 64 x 64 brain MR instance naming its patient, as a modality sends it. */
function brainMr({ patientId, patientName }: { patientId?: string; patientName?: string }): Buffer {
  const values = Array.from({ length: 64 * 64 }, (_, i) => (i * 37) & 0xfff);
  return syntheticImage({
    rows: 64,
    columns: 64,
    values,
    bitsStored: 12,
    extra: [
      { tag: 0x00080020, vr: 'DA', value: '20240315' },
      { tag: 0x00080060, vr: 'CS', value: 'MR' },
      ...(patientName ? [{ tag: 0x00100010, vr: 'PN' as const, value: patientName }] : []),
      ...(patientId ? [{ tag: 0x00100020, vr: 'LO' as const, value: patientId }] : []),
      { tag: 0x00180015, vr: 'CS', value: 'BRAIN' },
    ],
  });
}

/** Every file under `dir`, relative to it. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort();
}

for (const kind of await databaseKinds()) {
  describe(`upload: a DICOM file as the body (${kind})`, () => {
    let t: TestApp;
    let doctor: TestUser;
    useTestApp(kind, {
      env: { MAX_UPLOAD_MB: '1' },
      async setup(app) {
        t = app;
        doctor = await t.user();
      },
    });

    const post = (body: Buffer, user: TestUser | null = doctor, contentType = 'application/dicom') =>
      t.app.inject({ method: 'POST', url: '/api/scans', headers: { 'content-type': contentType, ...(user?.auth ?? {}) }, payload: body });
    const stored = () => filesUnder(path.join(t.dataDir, 'scans'));
    const scanCount = async () => (await t.database.db.select({ id: scans.id }).from(scans)).length;

    test('creates the patient from the header, stores the file and commits the scan with its job and audit events', async () => {
      const patientId = uniqueId();
      const file = brainMr({ patientId, patientName: 'HADDAD^NOOR' });
      const res = await post(file, doctor, 'application/dicom; charset=binary');
      assert.equal(res.statusCode, 201, res.body);
      const scan = res.json<{ _id: string; patientId: string; patientName: string; scanType: string; status: string; scanDate: string }>();
      assert.equal(scan.patientId, patientId);
      assert.equal(scan.patientName, 'NOOR HADDAD');
      assert.equal(scan.scanType, 'brain-mri');
      assert.equal(scan.status, 'processing');
      assert.equal(scan.scanDate.slice(0, 10), '2024-03-15');
      const [row] = await t.database.db.select().from(scans).where(eq(scans.id, scan._id));
      assert.ok((await t.ctx.storage.get(row!.originalKey)).equals(file), 'the stored original is the body');
      const jobs = await t.runtime.queue.take(analyzeJob, 100);
      assert.ok(jobs.some((j) => j.scanId === scan._id), 'its analysis job is queued');
      const events = await t.database.db
        .select({ action: auditEvents.action, statusCode: auditEvents.statusCode })
        .from(auditEvents)
        .where(and(eq(auditEvents.resourceId, scan._id), inArray(auditEvents.action, ['scan.upload', 'link.issue'])));
      assert.deepEqual(events.map((e) => `${e.action} ${e.statusCode}`).sort(), ['link.issue 201', 'scan.upload 201']);

      // The patient's next instance goes to the same patient, now on record.
      const again = await post(brainMr({ patientId, patientName: 'HADDAD^NOOR' }));
      assert.equal(again.statusCode, 201, again.body);
      const detail = (await t.app.inject({ url: `/api/patients/${patientId}`, headers: doctor.auth })).json<{ scans: unknown[]; assignedDoctors: { _id: string }[] }>();
      assert.equal(detail.scans.length, 2);
      assert.deepEqual(detail.assignedDoctors.map((d) => d._id), [doctor.id]);
    });

    test("no token is 401, and another doctor's patient is refused as the form refuses it, storing nothing", async () => {
      const other = await t.user();
      const theirs = await t.patient(other, { name: 'Priya Mehta' });
      const file = brainMr({ patientId: theirs.patientId, patientName: 'Priya Mehta' });
      const [scansBefore, filesBefore] = [await scanCount(), await stored()];
      assert.equal((await post(file, null)).statusCode, 401);
      const res = await post(file);
      const form = await t.app.inject(uploadRequest(doctor, { data: file, filename: 'mr.dcm', contentType: 'application/dicom' }));
      assert.equal(form.statusCode, 409, form.body);
      assert.deepEqual([res.statusCode, res.json()], [form.statusCode, form.json()]);
      assert.ok(!res.body.includes('Priya'), res.body);
      assert.equal(await scanCount(), scansBefore);
      assert.deepEqual(await stored(), filesBefore);
      // Their own doctor may.
      assert.equal((await post(file, other)).statusCode, 201);
    });

    test('the type is read from the bytes: a JPEG body is 415, anything else the answers of the form', async () => {
      const [scansBefore, filesBefore] = [await scanCount(), await stored()];
      const jpeg = await post(JPEG);
      assert.equal(jpeg.statusCode, 415, jpeg.body);
      assert.deepEqual(jpeg.json(), { error: 'The body is not a DICOM file: send a JPEG as multipart/form-data with the file in the "image" field' });
      const text = await post(Buffer.from('not an image at all'));
      assert.equal(text.statusCode, 415);
      assert.deepEqual(text.json(), { error: 'The file is not a JPEG, PNG or DICOM image.' });
      const empty = await post(Buffer.alloc(0));
      assert.equal(empty.statusCode, 400, empty.body);
      assert.deepEqual(empty.json(), { error: 'The image file is empty' });
      const whole = brainMr({ patientId: uniqueId(), patientName: 'Cut Short' });
      const truncated = whole.subarray(0, whole.length - 1000);
      const [cut, cutForm] = [await post(truncated), await t.app.inject(uploadRequest(doctor, { data: truncated, filename: 'mr.dcm' }))];
      assert.equal(cut.statusCode, 400, cut.body);
      assert.deepEqual(cut.json(), cutForm.json());
      const anonymous = await post(brainMr({}));
      assert.equal(anonymous.statusCode, 400);
      assert.deepEqual(anonymous.json(), { error: 'Form field "patientId" is required: the DICOM header has no PatientID' });
      const unnamed = await post(brainMr({ patientId: uniqueId() }));
      assert.equal(unnamed.statusCode, 400);
      assert.match(unnamed.json<{ error: string }>().error, /"patientName" is required/);
      assert.equal(await scanCount(), scansBefore);
      assert.deepEqual(await stored(), filesBefore);
    });

    test('over MAX_UPLOAD_MB is 413, announced or found while streaming, and leaves nothing in storage', async () => {
      const [scansBefore, filesBefore] = [await scanCount(), await stored()];
      const series = brainMr({ patientId: uniqueId(), patientName: 'Too Large' });
      const big = Buffer.concat([series, Buffer.alloc(1024 * 1024 + 1000 - series.length)]);
      const announced = await post(big);
      assert.equal(announced.statusCode, 413, announced.body);
      assert.deepEqual(announced.json(), { error: 'The file is larger than the upload limit of 1 MB' });

      // Chunked, no Content-Length: refused once past the limit, after the first 1 MB was streamed to storage.
      if (!t.app.server.listening) await t.app.listen({ port: 0, host: '127.0.0.1' });
      const { port } = t.app.server.address() as AddressInfo;
      const streamed = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request(
          { host: '127.0.0.1', port, method: 'POST', path: '/api/scans', headers: { 'content-type': 'application/dicom', 'transfer-encoding': 'chunked', ...doctor.auth } },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
          },
        );
        req.on('error', reject);
        void (async () => {
          const twice = Buffer.concat([big, big]);
          for (let at = 0; at < twice.length; at += 64 * 1024) {
            if (!req.write(twice.subarray(at, at + 64 * 1024))) await new Promise((r) => req.once('drain', r));
          }
          req.end();
        })();
      });
      assert.equal(streamed.status, 413, streamed.body);
      assert.deepEqual(JSON.parse(streamed.body), { error: 'The file is larger than the upload limit of 1 MB' });
      assert.equal(await scanCount(), scansBefore);
      assert.deepEqual(await stored(), filesBefore);
    });
  });
}
