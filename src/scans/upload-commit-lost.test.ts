/**
 * An upload whose COMMIT reached the database but whose answer did not (the connection dropped
 * during or right after it): the client library reports an error although the rows are
 * committed. Such an upload keeps its files and is answered 201 as stored, never stored twice;
 * one that was not committed leaves nothing; and one whose outcome cannot be read keeps its
 * files and is answered 503. The lost answer is simulated on the database handle the upload
 * uses: the statement or transaction runs and commits, then its caller gets pg's error.
 */
import assert from 'node:assert/strict';
import { readdir, readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import path from 'node:path';
import { describe, test } from 'node:test';
import { and, eq, inArray } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { AnalyzeScanPayloadSchema } from '../analysis/analyze.job.js';
import { ANALYZE_SCAN_JOB } from '../analysis/job-name.js';
import { syntheticImage } from '../imaging/testing/dicom-writer.js';
import type { Db } from '../platform/db/index.js';
import { auditEvents, scans } from '../platform/db/schema.js';
import type { JobDefinition } from '../platform/queue/index.js';
import { useTestApp, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { FIXTURES, uploadRequest, withSession } from './test-support.js';
import { IN_MEMORY_BYTES } from './upload.js';

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));
/** An uncompressed DICOM over IN_MEMORY_BYTES: streamed to storage before any check. */
const DICOM = (() => {
  const frames = 4;
  const values = new Uint16Array(512 * 512 * frames);
  for (let i = 0; i < values.length; i++) values[i] = (i * 7) & 0xfff;
  return syntheticImage({ rows: 512, columns: 512, values, frames });
})();
const readdirAsync = promisify(readdir);
const analyzeJob = { name: ANALYZE_SCAN_JOB, payload: AnalyzeScanPayloadSchema } as unknown as JobDefinition<typeof AnalyzeScanPayloadSchema>;

/** What the next writes through the handle meet. */
interface Faults {
  /** Upload statements (repository insertUploadInOneStatement) that commit, then answer a lost connection. */
  statementAnswersLost: number;
  /** Upload statements that fail with a lost connection before reaching the database. */
  statementsLost: number;
  /** Group statements (repository insertUploadGroup) that commit, then answer a lost connection. */
  groupAnswersLost?: number;
  /** Transactions that commit, then answer a lost connection. */
  commitAnswersLost: number;
  /** After the first lost answer the database stays out of reach: every statement fails. */
  staysDown: boolean;
  /** The first upload statement waits for this (so that the uploads behind it form a group). */
  firstUploadWaits?: Promise<void>;
}

/** pg's error when the server's connection ends while a statement waits for its answer. */
const connectionLost = () => new Error('Connection terminated unexpectedly');

/** `db` with the faults above: its statements and transactions run on the real database. */
function losingAnswers(db: Db, faults: Faults): Db {
  let down = false;
  const lose = () => {
    down ||= faults.staysDown;
    return connectionLost();
  };
  type Session = Db['_']['session'];
  return withSession(db, (session) => ({
    prepareQuery: ((...args: Parameters<Session['prepareQuery']>) => {
      const prepared = session.prepareQuery(...args);
      const upload = typeof args[2] === 'string' && args[2].startsWith('upload_scan_');
      const group = typeof args[2] === 'string' && args[2].startsWith('upload_group');
      const execute = prepared.execute.bind(prepared);
      prepared.execute = async (values?: Record<string, unknown>) => {
        if (upload && faults.firstUploadWaits) {
          const wait = faults.firstUploadWaits;
          delete faults.firstUploadWaits;
          await wait;
        }
        if (down) throw connectionLost();
        if (upload && faults.statementsLost > 0) {
          faults.statementsLost--;
          throw lose();
        }
        const result = await execute(values);
        if (upload && faults.statementAnswersLost > 0) {
          faults.statementAnswersLost--;
          throw lose();
        }
        if (group && faults.groupAnswersLost) {
          faults.groupAnswersLost--;
          throw lose();
        }
        return result;
      };
      return prepared;
    }) as Session['prepareQuery'],
    transaction: (async (...args: Parameters<Session['transaction']>) => {
      if (down) throw connectionLost();
      const result: unknown = await session.transaction(...args);
      if (faults.commitAnswersLost > 0) {
        faults.commitAnswersLost--;
        throw lose();
      }
      return result;
    }) as Session['transaction'],
  }));
}

for (const kind of await databaseKinds()) {
  describe(`an upload whose commit's answer is lost (${kind})`, () => {
    let t: TestApp;
    let doctor: TestUser;
    useTestApp(kind, {
      async setup(app) {
        t = app;
        doctor = await t.user();
      },
    });

    const noFaults = (): Faults => ({ statementAnswersLost: 0, statementsLost: 0, commitAnswersLost: 0, staysDown: false });
    const file = (data: Buffer) =>
      data === JPEG ? { data, filename: 'scan.jpg', contentType: 'image/jpeg' } : { data, filename: 'series.dcm', contentType: 'application/dicom' };

    /** Uploads with the handle's faults; the faults must all have happened. */
    async function uploadsMeeting(faults: Partial<Faults>, uploads: Array<{ data: Buffer; fields: Record<string, string> }>) {
      const plan = { ...noFaults(), ...faults };
      const db = t.ctx.db;
      t.ctx.db = losingAnswers(db, plan);
      try {
        const answers = await Promise.all(uploads.map((u) => t.app.inject(uploadRequest(doctor, { ...file(u.data), fields: u.fields }))));
        assert.deepEqual([plan.statementAnswersLost, plan.statementsLost, plan.commitAnswersLost, plan.groupAnswersLost ?? 0], [0, 0, 0, 0], 'every fault happened');
        return answers;
      } finally {
        t.ctx.db = db;
      }
    }

    const scansOf = (patientRowId: string) => t.ctx.db.select().from(scans).where(eq(scans.patientId, patientRowId));
    const storedFiles = async () =>
      (await readdirAsync(path.join(t.dataDir, 'files/scans'), { recursive: true, withFileTypes: true }).catch(() => [])).filter((f) => f.isFile()).length;
    // An upload stores its original only (c324f87); the display PNG and thumbnail come at first read.
    const filesPresent = async (scan: typeof scans.$inferSelect) =>
      Promise.all([scan.originalKey, scan.imageKey, scan.thumbnailKey].map((k) => t.ctx.storage.exists(k)));
    const auditedUploads = async (scanIds: string[]) =>
      (
        await t.ctx.db
          .select({ statusCode: auditEvents.statusCode })
          .from(auditEvents)
          .where(and(inArray(auditEvents.resourceId, scanIds), eq(auditEvents.action, 'scan.upload')))
      ).map((r) => r.statusCode);

    for (const data of [JPEG, DICOM]) {
      const what = data === JPEG ? 'a JPEG kept in memory' : `a DICOM file streamed to storage (over ${IN_MEMORY_BYTES} bytes)`;

      test(`${what}: committed by its one statement, the answer lost: 201 as any upload, its files kept, one scan`, async () => {
        const patient = await t.patient(doctor, { name: 'Ana Lima' });
        const usual = await t.app.inject(uploadRequest(doctor, { ...file(data), fields: { patientId: patient.patientId } }));
        assert.equal(usual.statusCode, 201, usual.body);
        const [res] = await uploadsMeeting({ statementAnswersLost: 1 }, [{ data, fields: { patientId: patient.patientId } }]);
        assert.equal(res!.statusCode, 201, res!.body);
        const body = res!.json<Record<string, unknown>>();
        assert.deepEqual(Object.keys(body).sort(), Object.keys(usual.json<Record<string, unknown>>()).sort(), "the upload answer's shape");
        assert.equal(body.patientId, patient.patientId);
        const rows = (await scansOf(patient._id)).filter((s) => s.id === body._id);
        assert.equal(rows.length, 1, 'its scan row');
        assert.deepEqual(await filesPresent(rows[0]!), [true, false, false], 'its original is kept');
        assert.equal((await scansOf(patient._id)).length, 2, 'no other scan');
        const shown = await t.app.inject({ url: `/api/scans/${String(body._id)}`, headers: doctor.auth });
        assert.equal(shown.statusCode, 200, shown.body);
        const jobs = (await t.runtime.queue.take(analyzeJob, 1000)).filter((j) => j.scanId === body._id);
        assert.equal(jobs.length, 1, 'one analysis job');
        assert.deepEqual(await auditedUploads([String(body._id)]), [201], 'one upload event, the answer given');
      });

      test(`${what}: committed, its answer lost and the database then out of reach: 503, and the files stay under the committed row`, async () => {
        const patient = await t.patient(doctor, { name: 'Ana Lima' });
        const [res] = await uploadsMeeting({ statementAnswersLost: 1, staysDown: true }, [{ data, fields: { patientId: patient.patientId } }]);
        assert.equal(res!.statusCode, 503, res!.body);
        assert.match(res!.json<{ error: string }>().error, /may or may not have been saved.*before sending it again/);
        assert.equal(res!.headers['retry-after'], '30', 'the client is told when to look');
        const rows = await scansOf(patient._id);
        assert.equal(rows.length, 1, 'committed');
        assert.deepEqual(await filesPresent(rows[0]!), [true, false, false], 'its original is kept');
      });
    }

    test('committed by its transaction (a patient given by _id), the answer lost: 201, its files kept, one scan', async () => {
      const patient = await t.patient(doctor, { name: 'Ivo Reis' });
      const [res] = await uploadsMeeting({ commitAnswersLost: 1 }, [{ data: JPEG, fields: { patientId: patient._id } }]);
      assert.equal(res!.statusCode, 201, res!.body);
      const rows = await scansOf(patient._id);
      assert.deepEqual(
        rows.map((r) => r.id),
        [res!.json<{ _id: string }>()._id],
      );
      assert.deepEqual(await filesPresent(rows[0]!), [true, false, false]);
      assert.deepEqual(await auditedUploads([rows[0]!.id]), [201]);
    });

    test("uploads committed together, the group's answer lost: each written again alone is refused (its ids taken), and all are 201, stored once", async () => {
      const patient = await t.patient(doctor, { name: 'Ana Lima' });
      // The first upload is written alone and held until the seven others wait behind it: they
      // are then written as one group, by one statement whose answer is lost after its commit.
      const { analysis } = t.ctx;
      let queued = 0;
      let allIn = () => {};
      const allQueued = new Promise<void>((resolve) => (allIn = resolve));
      t.ctx.analysis = {
        ...analysis,
        newScanAnalysis: (job) => {
          // (Called just before the upload joins the queue, in the same turn.)
          if (++queued === 8) setImmediate(allIn);
          return analysis.newScanAnalysis(job);
        },
      };
      let answers: LightMyRequestResponse[];
      try {
        answers = await uploadsMeeting(
          { groupAnswersLost: 1, firstUploadWaits: allQueued },
          Array.from({ length: 8 }, () => ({ data: JPEG, fields: { patientId: patient.patientId } })),
        );
      } finally {
        t.ctx.analysis = analysis;
      }
      assert.deepEqual(
        answers.map((a) => a.statusCode),
        Array.from({ length: 8 }, () => 201),
        answers.map((a) => a.body).join('\n'),
      );
      const ids = answers.map((a) => a.json<{ _id: string }>()._id);
      const rows = await scansOf(patient._id);
      assert.deepEqual(rows.map((r) => r.id).sort(), [...ids].sort(), 'one scan per upload, none twice');
      for (const row of rows) assert.deepEqual(await filesPresent(row), [true, false, false], 'every original kept');
      const jobs = (await t.runtime.queue.take(analyzeJob, 1000)).filter((j) => ids.includes(j.scanId));
      assert.equal(jobs.length, 8, 'one analysis job per scan');
      assert.deepEqual(await auditedUploads(ids), Array.from({ length: 8 }, () => 201));
    });

    test('committed, then the answer fails (its links cannot be signed): 500 as before, and the files stay under the committed row', async () => {
      const patient = await t.patient(doctor, { name: 'Ana Lima' });
      const { signer } = t.ctx;
      t.ctx.signer = {
        ...signer,
        sign: () => {
          throw new Error('signing failed');
        },
      };
      let res: LightMyRequestResponse;
      try {
        res = await t.app.inject(uploadRequest(doctor, { ...file(JPEG), fields: { patientId: patient.patientId } }));
      } finally {
        t.ctx.signer = signer;
      }
      assert.equal(res.statusCode, 500, res.body);
      const rows = await scansOf(patient._id);
      assert.equal(rows.length, 1);
      assert.deepEqual(await filesPresent(rows[0]!), [true, false, false]);
    });

    test('a write that really failed (the connection lost before it ran): 503 with Retry-After as any request meeting the database out of reach, no file and no row', async () => {
      const patient = await t.patient(doctor, { name: 'Ana Lima' });
      const filesBefore = await storedFiles();
      for (const data of [JPEG, DICOM]) {
        const [res] = await uploadsMeeting({ statementsLost: 1 }, [{ data, fields: { patientId: patient.patientId } }]);
        assert.equal(res!.statusCode, 503, res!.body);
        assert.equal(res!.headers['retry-after'], '30');
      }
      assert.equal(await storedFiles(), filesBefore, 'the stored files are removed');
      assert.deepEqual(await scansOf(patient._id), [], 'no scan row');
    });
  });
}
