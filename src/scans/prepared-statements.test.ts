/**
 * On a PostgreSQL server the statements each upload and analysis runs are named (prepared):
 * a connection parses them once and reuses their plan, instead of planning the analysis's claim
 * and end again each time (docs/benchmarks/pipeline.md). Seen from the server:
 * `pg_prepared_statements` of the one connection the uploads and analyses ran on. With
 * DATABASE_PREPARED_STATEMENTS=false none is. And an upload for a patient an earlier upload
 * found or created runs the upload's statement without the patient's creation, which must
 * still create the patient when it was deleted in between.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import pino from 'pino';
import { buildApp } from '../app.js';
import * as analyses from '../analysis/repository.js';
import { openDatabase } from '../platform/db/index.js';
import { createRuntime } from '../runtime.js';
import { uniqueId, useTestApp, type TestApp } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { warmUpUploads } from './service.js';
import { FIXTURES, uploadRequest } from './test-support.js';

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));
const UPLOADS = 8;

interface Prepared {
  name: string;
  generic_plans: number;
  custom_plans: number;
}

/**
 * Uploads UPLOADS scans for one patient (created by the first) through an app whose database
 * handle has one connection, and claims and ends each scan's analysis on it; the statements
 * that connection holds prepared, by name.
 */
async function preparedAfterUploads(t: TestApp, preparedStatements: boolean): Promise<Map<string, Prepared>> {
  const database = await openDatabase({ databaseUrl: t.database.connectionString, dataDir: null, poolSize: 1, preparedStatements });
  const runtime = await createRuntime(t.config, database, { log: pino({ level: 'silent' }), supervise: false });
  const app = await buildApp(runtime.ctx, { logger: false });
  try {
    await app.ready();
    const doctor = await t.user();
    const fields = { patientId: uniqueId(), patientName: 'Prepared Patient' };
    for (let i = 0; i < UPLOADS; i++) {
      const res = await app.inject(uploadRequest(doctor, { data: JPEG, fields }));
      assert.equal(res.statusCode, 201, res.body);
      const scanId = res.json<{ _id: string }>()._id;
      const analysis = await analyses.latestAnalysisOf(database.db, scanId);
      assert.ok(analysis);
      const claimed = await analyses.claimAnalysis(database.db, analysis.id, 1, 10);
      assert.equal(claimed?.id, scanId, 'the claim reads its scan');
      const ended = await analyses.endAnalysis(database.db, {
        analysisId: analysis.id,
        attempt: 1,
        analysis: { status: 'completed', progress: 100, durationMs: 5, completedAt: new Date() },
        scanId,
        scan: { status: 'completed', currentAnalysisId: analysis.id, failureReason: null },
      });
      assert.deepEqual(ended, { finished: true, heldBack: false, jobCompleted: false });
    }
    const result = await database.db.execute(sql`select name, generic_plans::int, custom_plans::int from pg_prepared_statements`);
    return new Map((result as { rows: Prepared[] }).rows.map((r) => [r.name, r]));
  } finally {
    await app.close();
    await runtime.stop();
    await database.close();
  }
}

const kinds = await databaseKinds();
describe('prepared statements on the PostgreSQL server', { skip: kinds.includes('postgres') ? false : 'no PostgreSQL server' }, () => {
  let t: TestApp;
  useTestApp('postgres', {
    async setup(app) {
      t = app;
    },
  });

  test('the upload, the patient look-up and the claim and end of an analysis are each prepared once and reused', async () => {
    const prepared = await preparedAfterUploads(t, true);
    // A statement whose text takes several forms is named `prefix_` and a hash of the text.
    const named = (prefix: string) => [...prepared.values()].filter((p) => p.name === prefix || new RegExp(`^${prefix}_[0-9a-f]{12}$`).test(p.name));
    // The first upload creates the patient (the full statement); the others find it on record.
    // Each keeps its small original in the database (the statements' `_original` variants).
    const runs = { upload_scan_doctor_original: 1, upload_scan_doctor_known_original: UPLOADS - 1, patient_for_scans_doctor: UPLOADS, analysis_claim: UPLOADS, analysis_end: UPLOADS };
    for (const [name, times] of Object.entries(runs)) {
      const statements = named(name);
      assert.equal(statements.length, 1, `one prepared statement ${name} (${[...prepared.keys()].join(', ')})`);
      const [statement] = statements;
      // Every run used the one preparation: a statement sent unnamed is not in the view at all.
      assert.equal(statement!.generic_plans + statement!.custom_plans, times, `${name} ran prepared each time: ${JSON.stringify(statement)}`);
    }
    // After its first five runs PostgreSQL keeps a generic plan when it costs no more: not planned per scan.
    assert.ok(named('analysis_claim')[0]!.generic_plans > 0, JSON.stringify(named('analysis_claim')[0]));
    assert.ok(named('upload_scan_doctor_known_original')[0]!.generic_plans > 0, JSON.stringify(named('upload_scan_doctor_known_original')[0]));
  });

  test('a server process has every upload statement prepared before its first upload, and commits nothing for it', async () => {
    const database = await openDatabase({ databaseUrl: t.database.connectionString, dataDir: null, poolSize: 1 });
    const runtime = await createRuntime(t.config, database, { log: pino({ level: 'silent' }), supervise: false });
    const app = await buildApp(runtime.ctx, { logger: false });
    const counts = async () =>
      (
        (await database.db.execute(sql`select (select count(*) from users)::int as users, (select count(*) from patients)::int as patients,
          (select count(*) from scans)::int as scans, (select count(*) from analyses)::int as analyses, (select count(*) from scan_originals)::int as originals,
          (select count(*) from audit_events)::int as audit, (select count(*) from pgboss.job)::int as jobs`)) as { rows: Record<string, number>[] }
      ).rows[0];
    const preparedUploads = async () =>
      new Map(
        ((await database.db.execute(sql`select name, generic_plans::int, custom_plans::int from pg_prepared_statements where name like 'upload%'`)) as { rows: Prepared[] }).rows.map((r) => [
          r.name,
          r.generic_plans + r.custom_plans,
        ]),
      );
    try {
      await app.ready();
      const before = await counts();
      await warmUpUploads(runtime.ctx);
      assert.deepEqual(await counts(), before, 'no user, patient, scan, analysis, original, audit event or job left behind');
      // Each kind of upload, alone (a doctor's, an admin's) or grouped, creating its patient or finding it.
      const kinds = ['upload_scan_doctor', 'upload_scan_doctor_known', 'upload_scan_admin', 'upload_scan_admin_known', 'upload_group', 'upload_group_known'];
      assert.deepEqual(
        await preparedUploads(),
        new Map(kinds.map((kind) => [`${kind}_original`, 1])),
      );

      // The first upload runs the statement prepared for it: no second preparation, no error.
      const doctor = await t.user();
      const res = await app.inject(uploadRequest(doctor, { data: JPEG, fields: { patientId: uniqueId(), patientName: 'After Start-up' } }));
      assert.equal(res.statusCode, 201, res.body);
      assert.equal((await preparedUploads()).get('upload_scan_doctor_original'), 2);
    } finally {
      await app.close();
      await runtime.stop();
      await database.close();
    }
  });

  test('DATABASE_PREPARED_STATEMENTS=false sends every statement unnamed (a pooler in transaction mode)', async () => {
    const prepared = await preparedAfterUploads(t, false);
    assert.deepEqual([...prepared.keys()], []);
  });
});

for (const kind of kinds) {
  describe(`an upload for a patient an earlier upload found (${kind})`, () => {
    let t: TestApp;
    useTestApp(kind, {
      async setup(app) {
        t = app;
      },
    });

    test('creates the patient again when it was deleted since', async () => {
      const doctor = await t.user();
      const admin = await t.user({ role: 'admin' });
      const fields = { patientId: uniqueId(), patientName: 'Deleted Between' };
      const first = await t.app.inject(uploadRequest(doctor, { data: JPEG, fields }));
      assert.equal(first.statusCode, 201, first.body);
      const { patient } = await t.app.inject({ method: 'GET', url: `/api/patients/${fields.patientId}`, headers: doctor.auth }).then((r) => ({ patient: r.json<{ _id: string }>() }));
      const deleted = await t.app.inject({ method: 'DELETE', url: `/api/patients/${patient._id}`, headers: admin.auth });
      assert.equal(deleted.statusCode, 200, deleted.body);

      const again = await t.app.inject(uploadRequest(doctor, { data: JPEG, fields }));
      assert.equal(again.statusCode, 201, again.body);
      const scan = again.json<{ _id: string; patientId: string; patientName: string }>();
      assert.deepEqual([scan.patientId, scan.patientName], [fields.patientId, 'Deleted Between']);
      const list = await t.app.inject({ method: 'GET', url: `/api/scans?patientId=${fields.patientId}`, headers: doctor.auth });
      assert.equal(list.statusCode, 200, list.body);
      assert.deepEqual(
        list.json<{ scans: Array<{ _id: string }> }>().scans.map((s) => s._id),
        [scan._id],
        'the new patient, assigned to the uploader, with the one scan',
      );
    });
  });
}
