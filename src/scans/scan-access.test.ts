/**
 * scan_access (migration 0007): one row per scan and assigned doctor, kept by triggers, walked
 * by a doctor's list. It must always equal access/'s rule (the scans of the doctor's assigned
 * patients), after every kind of change, and be filled on a database that existed before it.
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

const rowsOf = (r: unknown) => (Array.isArray(r) ? r : (r as { rows: unknown[] }).rows) as Record<string, unknown>[];

/** Rows of scan_access that the rule does not give, and rows of the rule that scan_access lacks. */
async function drift(db: DbOrTx): Promise<{ extra: number; missing: number }> {
  const [row] = rowsOf(
    await db.execute(sql`select
      (select count(*)::int from (select scan_id, doctor_id, scan_date from scan_access
        except select s.id, pd.doctor_id, s.scan_date from scans s join patient_doctors pd on pd.patient_id = s.patient_id) x) as extra,
      (select count(*)::int from (select s.id, pd.doctor_id, s.scan_date from scans s join patient_doctors pd on pd.patient_id = s.patient_id
        except select scan_id, doctor_id, scan_date from scan_access) y) as missing`),
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

  test(`migration 0007 fills scan_access on a database that existed before it (${kind})`, async () => {
    const full = path.join(REPO_ROOT, 'src/platform/db/migrations');
    const before0007 = mkdtempSync(path.join(tmpdir(), 'imagemedix-migrations-'));
    cpSync(full, before0007, { recursive: true });
    const journal = JSON.parse(readFileSync(path.join(before0007, 'meta/_journal.json'), 'utf8')) as { entries: { tag: string }[] };
    journal.entries = journal.entries.filter((e) => e.tag < '0007');
    writeFileSync(path.join(before0007, 'meta/_journal.json'), JSON.stringify(journal));

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
      await migrate(before0007);
      const [u1, u2] = rowsOf(
        await db.execute(sql`insert into users (email, password_hash, name, role) values
          ('a@x.test', 'x', 'A', 'doctor'), ('b@x.test', 'x', 'B', 'doctor') returning id`),
      ).map((r) => r.id as string);
      await seedScans(db, { doctorId: u1!, doctorIds: [u1!, u2!], patients: 6, scans: 30, patientPrefix: 'OLD-' });
      await db.execute(sql`insert into patient_doctors (patient_id, doctor_id) select id, ${u1} from patients where patient_id = 'OLD-1'`);
      await migrate(full);
      const [n] = rowsOf(await db.execute(sql`select count(*)::int as n from scan_access`));
      assert.equal(n!.n, 35, 'each scan once per doctor of its patient');
      assert.deepEqual(await drift(db), { extra: 0, missing: 0 });
    } finally {
      await close();
      rmSync(before0007, { recursive: true, force: true });
    }
  });
}
