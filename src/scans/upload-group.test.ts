/**
 * Uploads that arrive together are written by one statement (repository insertUploadGrouped):
 * each must get what its own statement would give it, whoever uploads it (admins and doctors
 * in one group), one refused upload must not touch the others, and uploads naming one new
 * patient must make one patient.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';
import { eq, inArray } from 'drizzle-orm';
import { STATEMENT_PATIENT } from '../audit/repository.js';
import type { Db } from '../platform/db/index.js';
import { auditEvents, patientDoctors, patients, scanOriginals, scans } from '../platform/db/schema.js';
import type { JobDefinition } from '../platform/queue/index.js';
import { WEBHOOK_DELIVERY_JOB } from '../webhooks/deliver.job.js';
import { WebhookDeliveryPayloadSchema } from '../webhooks/types.js';
import { uniqueId, useTestApp, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import * as repo from './repository.js';
import { withSession } from './test-support.js';

type UploadValues = Parameters<typeof repo.insertUploadGrouped>[1];
const deliveryJob = { name: WEBHOOK_DELIVERY_JOB, payload: WebhookDeliveryPayloadSchema } as unknown as JobDefinition<typeof WebhookDeliveryPayloadSchema>;

type Session = Db['_']['session'];

/** `db`, recording the name of each named statement it prepares and each transaction it opens. */
function recording(db: Db, seen: string[]): Db {
  return withSession(db, (session) => ({
    prepareQuery: ((...args: Parameters<Session['prepareQuery']>) => {
      if (typeof args[2] === 'string') seen.push(args[2]);
      return session.prepareQuery(...args);
    }),
    transaction: ((...args: Parameters<Session['transaction']>) => {
      seen.push('transaction');
      return session.transaction(...args);
    }) as Session['transaction'],
  }));
}

for (const kind of await databaseKinds()) {
  describe(`uploads written together in one statement (${kind})`, () => {
    let t: TestApp;
    useTestApp(kind, {
      async setup(app) {
        t = app;
      },
    });

    /** An upload's values as storeUpload gives them, with one audit event naming its patient. */
    const uploadOf = (viewer: TestUser, patientId: string, { formName = null, newName = null }: { formName?: string | null; newName?: string | null } = {}): UploadValues => {
      const scanId = randomUUID();
      const { analysis, job } = t.ctx.analysis.newScanAnalysis({ scanId, scanType: null, requestedBy: viewer.id });
      return {
        viewer: { id: viewer.id, role: viewer.role },
        patientId,
        formName,
        newName,
        scan: {
          id: scanId,
          doctorId: viewer.id,
          scanDate: new Date(),
          scanType: null,
          status: 'processing',
          originalFormat: 'jpeg',
          originalKey: `test/${scanId}/original.jpg`,
          imageKey: `test/${scanId}/image.png`,
          thumbnailKey: `test/${scanId}/thumb.png`,
          width: 64,
          height: 64,
          fileSize: 1234,
          sha256: 'ab'.repeat(32),
          dicom: null,
          studyInstanceUid: null,
          seriesInstanceUid: null,
          sopInstanceUid: null,
        },
        analysis,
        analysisJob: job,
        extras: { deliveryRecords: (patient, owner, value) => t.ctx.events.deliveryRecords(t.ctx.db, patient, owner, value) },
        extraValues: t.ctx.events.deliveryValues({ type: 'scan.uploaded', scanId, status: 'processing' }),
        auditRows: [
          {
            actorId: viewer.id,
            actorRole: viewer.role,
            action: 'scan.upload',
            resourceType: 'scan',
            resourceId: scanId,
            patientIds: [STATEMENT_PATIENT],
            outcome: 'success',
            statusCode: 201,
          },
        ],
      };
    };

    /** Writes the uploads as one group (queued in one turn), recording the statements run. */
    const writeGroup = async (uploads: UploadValues[]) => {
      const seen: string[] = [];
      const db = recording(t.ctx.db, seen);
      const saved = await Promise.all(uploads.map((values) => repo.insertUploadGrouped(db, values)));
      return { saved, statements: seen.filter((name) => name === 'transaction' || name.startsWith('upload_')) };
    };

    const subscribe = async (owner: TestUser) => {
      const res = await t.app.inject({ method: 'POST', url: '/api/webhooks', headers: owner.auth, payload: { url: 'http://127.0.0.1:9/hook', events: ['scan.uploaded'] } });
      assert.equal(res.statusCode, 201, res.body);
      return res.json<{ _id: string }>()._id;
    };

    test('uploads naming one new patient make one patient, assigned to its creator, in one statement', async () => {
      const doctor = await t.user();
      const otherDoctor = await t.user();
      const admin = await t.user({ role: 'admin' });
      const mine = await subscribe(doctor);
      const foreign = await subscribe(otherDoctor);
      const patientId = uniqueId();
      const uploads = [
        uploadOf(doctor, patientId, { newName: 'Nova Group' }),
        uploadOf(doctor, patientId, { formName: 'Nova Group', newName: 'Nova Group' }),
        // No name of its own: it takes the patient the group creates, as it would after its commit.
        uploadOf(doctor, patientId),
        uploadOf(admin, patientId, { newName: 'Nova Group' }),
      ];
      const { saved, statements } = await writeGroup(uploads);
      assert.deepEqual(statements, ['upload_group'], 'the group is one statement, no transaction');
      assert.ok(saved.every((s) => s !== null), 'every upload is written');
      const rows = await t.ctx.db.select().from(patients).where(eq(patients.patientId, patientId));
      assert.equal(rows.length, 1, 'one patient');
      assert.deepEqual([rows[0]!.name, rows[0]!.createdBy], ['Nova Group', doctor.id]);
      assert.deepEqual(
        saved.map((s) => s.patient),
        uploads.map(() => ({ id: rows[0]!.id, patientId, name: 'Nova Group' })),
      );
      const assigned = await t.ctx.db.select().from(patientDoctors).where(eq(patientDoctors.patientId, rows[0]!.id));
      assert.deepEqual(
        assigned.map((a) => a.doctorId),
        [doctor.id],
      );
      const scanIds = uploads.map((u) => u.scan.id!);
      const stored = await t.ctx.db.select({ id: scans.id, patientId: scans.patientId }).from(scans).where(inArray(scans.id, scanIds));
      assert.deepEqual(stored.map((s) => s.patientId), scanIds.map(() => rows[0]!.id));
      // The creator's webhook hears of each scan (an assignment the statement makes itself); another doctor's does not.
      const deliveries = (await t.runtime.queue.take(deliveryJob, 1000)).filter((d) => scanIds.some((id) => d.body.includes(id)));
      assert.deepEqual(deliveries.map((d) => d.webhookId).sort(), scanIds.map(() => mine).sort());
      assert.ok(!deliveries.some((d) => d.webhookId === foreign));
      assert.ok(deliveries.every((d) => d.patientId === rows[0]!.id && d.body.includes(rows[0]!.id)));
    });

    test("a group's small originals are each committed with their own scan, byte for byte, in the one statement", async () => {
      const doctor = await t.user();
      const patientId = uniqueId();
      // Of different sizes, one with none (its original in the file store): each upload's bytes
      // are cut out of the group's one parameter at its own place.
      const originals = [randomBytes(9000), null, randomBytes(1), randomBytes(70_000)];
      const uploads = originals.map((original) => ({ ...uploadOf(doctor, patientId, { newName: 'Ada Bytes' }), original }));
      const { saved, statements } = await writeGroup(uploads);
      assert.deepEqual(statements, ['upload_group_original'], 'the group is one statement, no transaction');
      assert.ok(saved.every((s) => s !== null), 'every upload is written');
      const scanIds = uploads.map((u) => u.scan.id!);
      const kept = await t.ctx.db.select().from(scanOriginals).where(inArray(scanOriginals.scanId, scanIds));
      const byScan = new Map(kept.map((row) => [row.scanId, Buffer.from(row.bytes)]));
      assert.equal(byScan.size, 3);
      originals.forEach((original, i) => {
        if (original) assert.ok(byScan.get(scanIds[i]!)?.equals(original), `upload ${i}'s bytes`);
        else assert.equal(byScan.has(scanIds[i]!), false);
      });
    });

    test('admins and doctors in one group each get their own rule; a refused upload writes nothing and the others are written', async () => {
      const owner = await t.user();
      const otherDoctor = await t.user();
      const admin = await t.user({ role: 'admin' });
      const patient = await t.patient(owner, { name: 'Ana Lima' });
      const newId = uniqueId();
      const uploads = [
        uploadOf(owner, patient.patientId),
        uploadOf(otherDoctor, patient.patientId, { newName: 'Ana Lima' }),
        uploadOf(admin, patient.patientId, { formName: 'Ana Lima', newName: 'Ana Lima' }),
        uploadOf(owner, patient.patientId, { formName: 'Someone Else', newName: 'Someone Else' }),
        uploadOf(otherDoctor, newId, { newName: 'Bea Nova' }),
        uploadOf(admin, uniqueId()),
      ];
      const { saved, statements } = await writeGroup(uploads);
      assert.deepEqual(statements, ['upload_group']);
      assert.deepEqual(
        saved.map((s) => s?.patient.patientId ?? null),
        [patient.patientId, null, patient.patientId, null, newId, null],
        "another doctor's patient, a name that differs and a new patient without a name are not taken",
      );
      const scanIds = uploads.map((u) => u.scan.id!);
      const stored = await t.ctx.db.select({ id: scans.id }).from(scans).where(inArray(scans.id, scanIds));
      assert.deepEqual(stored.map((s) => s.id).sort(), [scanIds[0], scanIds[2], scanIds[4]].sort(), 'no row for a refused upload');
      const audited = await t.ctx.db.select().from(auditEvents).where(inArray(auditEvents.resourceId, scanIds));
      assert.deepEqual(
        audited.map((a) => [a.resourceId, a.patientIds]).sort(),
        [
          [scanIds[0], [patient._id]],
          [scanIds[2], [patient._id]],
          [scanIds[4], [saved[4]!.patient.id]],
        ].sort(),
        "each written upload's events name its patient; a refused one has none",
      );
      const [created] = await t.ctx.db.select().from(patientDoctors).where(eq(patientDoctors.patientId, saved[4]!.patient.id));
      assert.equal(created?.doctorId, otherDoctor.id, 'the new patient is assigned to its uploader');
    });
  });
}
