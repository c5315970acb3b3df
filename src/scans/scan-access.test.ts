/**
 * scan_access (migrations 0007, 0009): one row per scan and assigned doctor with the scan's date,
 * status and type, kept by triggers, walked by a doctor's list. It must always equal access/'s
 * rule (the scans of the doctor's assigned patients, as they are now), after every kind of
 * change, and be filled on a database that existed before it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PGlite } from '@electric-sql/pglite';
import { eq, sql } from 'drizzle-orm';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import pg from 'pg';
import { REPO_ROOT } from '../platform/config.js';
import type { DbOrTx } from '../platform/db/index.js';
import { patientDoctors, patients, scans, users } from '../platform/db/schema.js';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { seedScans } from '../bench/seed.js';
import * as analysisRepo from '../analysis/repository.js';

const rowsOf = (r: unknown) => (Array.isArray(r) ? r : (r as { rows: unknown[] }).rows) as Record<string, unknown>[];

/** Rows of scan_access that the rule does not give, and rows of the rule that scan_access lacks. */
async function drift(db: DbOrTx): Promise<{ extra: number; missing: number }> {
  const [row] = rowsOf(
    await db.execute(sql`select
      (select count(*)::int from (select scan_id, doctor_id, scan_date, status, scan_type from scan_access
        except select s.id, pd.doctor_id, s.scan_date, s.status, s.scan_type from scans s join patient_doctors pd on pd.patient_id = s.patient_id) x) as extra,
      (select count(*)::int from (select s.id, pd.doctor_id, s.scan_date, s.status, s.scan_type from scans s join patient_doctors pd on pd.patient_id = s.patient_id
        except select scan_id, doctor_id, scan_date, status, scan_type from scan_access) y) as missing`),
  );
  return { extra: row!.extra as number, missing: row!.missing as number };
}

for (const kind of await databaseKinds()) {
  describe(`scan_access follows scans and assignments (${kind})`, () => {
    let t: TestApp;
    let admin: TestUser;
    let doctor: TestUser;
    let other: TestUser;
    let prefix: string;
    const db = () => t.database.db;

    before(async () => {
      t = await createTestApp(kind);
      [admin, doctor, other] = await Promise.all([t.user({ role: 'admin' }), t.user(), t.user()]);
      prefix = `${uniqueId('ACC')}-`;
      await seedScans(db(), { doctorId: doctor.id, patients: 4, scans: 20, patientPrefix: prefix });
    });
    after(() => t.close());

    test('new scans, (un)assignments, moved and deleted scans, deleted patients and users', async () => {
      assert.deepEqual(await drift(db()), { extra: 0, missing: 0 });
      const count = async (doctorId: string) =>
        rowsOf(await db().execute(sql`select count(*)::int as n from scan_access where doctor_id = ${doctorId}`))[0]!.n;
      assert.equal(await count(doctor.id), 20);

      const assign = await t.app.inject({ method: 'POST', url: `/api/patients/${prefix}1/assign-doctor`, headers: admin.auth, payload: { doctorId: other.id } });
      assert.equal(assign.statusCode, 200, assign.body);
      assert.equal(await count(other.id), 5);
      const unassign = await t.app.inject({ method: 'DELETE', url: `/api/patients/${prefix}1/assign-doctor/${doctor.id}`, headers: admin.auth });
      assert.equal(unassign.statusCode, 200, unassign.body);
      assert.equal(await count(doctor.id), 15);
      assert.deepEqual(await drift(db()), { extra: 0, missing: 0 });

      // A scan moved to another patient and to another date.
      const [p1] = await db().select({ id: patients.id }).from(patients).where(eq(patients.patientId, `${prefix}1`));
      const [p2] = await db().select({ id: patients.id }).from(patients).where(eq(patients.patientId, `${prefix}2`));
      const [moved] = await db().select({ id: scans.id }).from(scans).where(eq(scans.patientId, p2!.id)).limit(1);
      await db().update(scans).set({ patientId: p1!.id, scanDate: new Date('2001-02-03T04:05:06Z') }).where(eq(scans.id, moved!.id));
      assert.equal(await count(other.id), 6);
      assert.equal(await count(doctor.id), 14);
      assert.deepEqual(await drift(db()), { extra: 0, missing: 0 });

      // Scans added in one statement and in a transaction with an assignment.
      await seedScans(db(), { doctorId: doctor.id, patients: 4, scans: 8, patientPrefix: prefix });
      await db().transaction(async (tx) => {
        await tx.insert(patientDoctors).values({ patientId: p2!.id, doctorId: other.id });
        await tx.execute(sql`insert into scans (patient_id, doctor_id, scan_date, scan_type, status, original_format, original_key, image_key, thumbnail_key, width, height, file_size, sha256)
          select patient_id, doctor_id, now(), scan_type, status, original_format, original_key, image_key, thumbnail_key, width, height, file_size, md5(random()::text)
          from scans where patient_id in (${p1!.id}, ${p2!.id})`);
      });
      assert.deepEqual(await drift(db()), { extra: 0, missing: 0 });

      await db().delete(scans).where(eq(scans.id, moved!.id));
      await db().delete(patients).where(eq(patients.id, p2!.id));
      assert.deepEqual(await drift(db()), { extra: 0, missing: 0 });
      await db().delete(users).where(eq(users.id, other.id));
      assert.equal(await count(other.id), 0);
      assert.deepEqual(await drift(db()), { extra: 0, missing: 0 });
    });

    test('status and type changes (an analysis taken and ended, a type decided): the filtered list follows them', async () => {
      const own = `${uniqueId('ST')}-`;
      await seedScans(db(), { doctorId: doctor.id, patients: 2, scans: 6, patientPrefix: own });
      const mine = await db()
        .select({ id: scans.id })
        .from(scans)
        .innerJoin(patients, eq(patients.id, scans.patientId))
        .where(sql`${patients.patientId} like ${`${own}%`}`);
      assert.equal(mine.length, 6);
      const [taken, ended, typed] = mine.map((m) => m.id) as [string, string, string];
      await analysisRepo.updateScan(db(), taken, { status: 'processing', failureReason: null });
      const analysis = await analysisRepo.insertAnalysis(db(), { scanId: ended, scanType: 'brain-mri', status: 'active' });
      const end = await analysisRepo.endAnalysis(db(), {
        analysisId: analysis.id,
        analysis: { status: 'failed', error: 'decode failed', completedAt: new Date() },
        scanId: ended,
        scan: { status: 'failed', failureReason: 'decode failed' },
      });
      assert.equal(end.finished, true);
      await analysisRepo.updateScan(db(), typed, { scanType: null });
      await analysisRepo.updateScan(db(), typed, { scanType: 'chest-xray' });
      assert.deepEqual(await drift(db()), { extra: 0, missing: 0 });

      // What the doctor sees: the list filtered by status and by type is the rule applied to scans now.
      for (const query of ['status=failed', 'status=processing', 'scanType=chest-xray', 'status=failed&scanType=brain-mri']) {
        const res = await t.app.inject({ method: 'GET', url: `/api/scans?limit=100&${query}`, headers: doctor.auth });
        assert.equal(res.statusCode, 200, res.body);
        const body = res.json<{ scans: { _id: string }[]; totalScans: number }>();
        const params = new URLSearchParams(query);
        const expected = rowsOf(
          await db().execute(sql`select s.id from scans s join patient_doctors pd on pd.patient_id = s.patient_id
            where pd.doctor_id = ${doctor.id} and (${params.get('status')}::text is null or s.status = ${params.get('status')})
              and (${params.get('scanType')}::text is null or s.scan_type = ${params.get('scanType')})`),
        ).map((r) => r.id as string);
        assert.deepEqual(body.scans.map((x) => x._id).sort(), expected.sort(), query);
        assert.equal(body.totalScans, expected.length, query);
      }
      const failed = await t.app.inject({ method: 'GET', url: '/api/scans?limit=100&status=failed', headers: doctor.auth });
      assert.ok(failed.json<{ scans: { _id: string }[] }>().scans.some((x) => x._id === ended), 'the scan whose analysis failed is listed as failed');
    });

    if (kind === 'postgres') {
      test('assignments and new scans of one patient racing in separate transactions', async () => {
        const racer = await t.user();
        const pid = `${prefix}3`;
        const [p3] = await db().select({ id: patients.id }).from(patients).where(eq(patients.patientId, pid));
        await Promise.all(
          Array.from({ length: 6 }, (_, i) =>
            i % 2 === 0
              ? db().transaction(async (tx) => {
                  await tx.insert(patientDoctors).values({ patientId: p3!.id, doctorId: racer.id }).onConflictDoNothing();
                  await tx.delete(patientDoctors).where(sql`${patientDoctors.patientId} = ${p3!.id} and ${patientDoctors.doctorId} = ${racer.id} and ${i === 4}`);
                })
              : seedScans(db(), { doctorId: doctor.id, patients: 4, scans: 4, patientPrefix: prefix }),
          ),
        );
        assert.deepEqual(await drift(db()), { extra: 0, missing: 0 });
      });

      test('a status change and an assignment of its patient racing, in either order (0009)', async () => {
        const own = `${uniqueId('RACE')}-`;
        await seedScans(db(), { doctorId: doctor.id, patients: 1, scans: 2, patientPrefix: own });
        const [scan] = await db()
          .select({ id: scans.id, patientId: scans.patientId, status: scans.status })
          .from(scans)
          .innerJoin(patients, eq(patients.id, scans.patientId))
          .where(eq(patients.patientId, `${own}1`))
          .limit(1);
        const connect = async () => {
          const c = new pg.Client({ connectionString: t.database.connectionString! });
          await c.connect();
          await c.query('begin');
          return c;
        };
        const setStatus = (c: pg.Client, status: string) => c.query('update scans set status = $1 where id = $2', [status, scan!.id]);
        const assign = async (c: pg.Client) => c.query('insert into patient_doctors (patient_id, doctor_id) values ($1, $2)', [scan!.patientId, (await t.user()).id]);
        const settle = () => new Promise((resolve) => setTimeout(resolve, 300));
        // Each round a real change: the second round sets the scan back.
        const other = scan!.status === 'failed' ? 'completed' : 'failed';
        for (const [status, first] of [
          [other, 'assignment'],
          [scan!.status, 'status'],
        ] as const) {
          const [a, b] = await Promise.all([connect(), connect()]);
          try {
            // The second one runs into the first's lock on the patient, and must read or correct what the first wrote once it commits.
            if (first === 'assignment') await assign(b);
            else await setStatus(a, status);
            const second = first === 'assignment' ? setStatus(a, status).then(() => a.query('commit')) : assign(b).then(() => b.query('commit'));
            await settle();
            await (first === 'assignment' ? b : a).query('commit');
            await second;
          } finally {
            for (const c of [a, b]) await c.end().catch(() => undefined);
          }
          assert.deepEqual(await drift(db()), { extra: 0, missing: 0 }, `${first} first`);
        }
      });

      test('new scans of one patient do not wait for each other; an assignment still waits for them (0008)', async () => {
        const [p4] = await db().select({ id: patients.id }).from(patients).where(eq(patients.patientId, `${prefix}4`));
        const copyScan = `insert into scans (patient_id, doctor_id, scan_date, scan_type, status, original_format, original_key, image_key, thumbnail_key, width, height, file_size, sha256)
          select patient_id, doctor_id, now(), scan_type, status, original_format, original_key, image_key, thumbnail_key, width, height, file_size, md5(random()::text)
          from scans where patient_id = $1 limit 1`;
        const connect = async () => {
          const c = new pg.Client({ connectionString: t.database.connectionString! });
          await c.connect();
          await c.query('begin');
          await c.query(`set local lock_timeout = '2s'`);
          return c;
        };
        const [first, second, assigner] = await Promise.all([connect(), connect(), connect()]);
        try {
          await first.query(copyScan, [p4!.id]);
          // The second upload of the same patient goes through while the first is still open.
          await second.query(copyScan, [p4!.id]);
          await second.query('commit');
          // An assignment must wait for the open upload, or it could miss its scan.
          const racer = await t.user();
          await assert.rejects(
            assigner.query('insert into patient_doctors (patient_id, doctor_id) values ($1, $2)', [p4!.id, racer.id]),
            (err: { code?: string }) => err.code === '55P03',
          );
          await first.query('commit');
        } finally {
          for (const c of [first, second, assigner]) await c.end().catch(() => undefined);
        }
        assert.deepEqual(await drift(db()), { extra: 0, missing: 0 });
      });
    }
  });

  // 0007 made scan_access and filled it; 0009 writes it afresh with each scan's status and type.
  for (const migration of ['0007', '0009']) test(`migration ${migration} fills scan_access on a database that existed before it (${kind})`, async () => {
    const full = path.join(REPO_ROOT, 'src/platform/db/migrations');
    const before = mkdtempSync(path.join(tmpdir(), 'imagemedix-migrations-'));
    cpSync(full, before, { recursive: true });
    const journal = JSON.parse(readFileSync(path.join(before, 'meta/_journal.json'), 'utf8')) as { entries: { tag: string }[] };
    journal.entries = journal.entries.filter((e) => e.tag < migration);
    writeFileSync(path.join(before, 'meta/_journal.json'), JSON.stringify(journal));

    let close: () => Promise<void>;
    let db: DbOrTx;
    let migrate: (folder: string) => Promise<void>;
    if (kind === 'pglite') {
      const client = new PGlite();
      const d = drizzlePglite(client);
      db = d as unknown as DbOrTx;
      migrate = (folder) => migratePglite(d, { migrationsFolder: folder });
      close = () => client.close();
    } else {
      const adminUrl = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
      const name = `imagemedix_test_${randomBytes(6).toString('hex')}`;
      const admin = new pg.Client({ connectionString: adminUrl });
      await admin.connect();
      await admin.query(`create database ${name}`);
      const url = new URL(adminUrl);
      url.pathname = `/${name}`;
      const pool = new pg.Pool({ connectionString: url.toString(), max: 2 });
      pool.on('error', () => undefined);
      const d = drizzlePg(pool);
      db = d as unknown as DbOrTx;
      migrate = (folder) => migratePg(d, { migrationsFolder: folder });
      close = async () => {
        await pool.end();
        await admin.query(`drop database if exists ${name} with (force)`);
        await admin.end();
      };
    }
    try {
      await migrate(before);
      const [u1, u2] = rowsOf(
        await db.execute(sql`insert into users (email, password_hash, name, role) values
          ('a@x.test', 'x', 'A', 'doctor'), ('b@x.test', 'x', 'B', 'doctor') returning id`),
      ).map((r) => r.id as string);
      await seedScans(db, { doctorId: u1!, doctorIds: [u1!, u2!], patients: 6, scans: 30, patientPrefix: 'OLD-' });
      await db.execute(sql`insert into patient_doctors (patient_id, doctor_id) select id, ${u1} from patients where patient_id = 'OLD-1'`);
      // Changes that no trigger before 0009 copied.
      await db.execute(sql`update scans set status = 'failed', scan_type = null where patient_id = (select id from patients where patient_id = 'OLD-2')`);
      await migrate(full);
      const [n] = rowsOf(await db.execute(sql`select count(*)::int as n from scan_access`));
      assert.equal(n!.n, 35, 'each scan once per doctor of its patient');
      assert.deepEqual(await drift(db), { extra: 0, missing: 0 });
    } finally {
      await close();
      rmSync(before, { recursive: true, force: true });
    }
  });
}
