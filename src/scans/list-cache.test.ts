/**
 * The list's pages kept in memory (repository.ts, platform/db/read-cache.ts): a kept page must
 * never show a scan its viewer may no longer see, nor a status that has changed. On PostgreSQL
 * also a change committed by another connection (another process), once its NOTIFY arrives
 * (platform/db/server-writes.ts), and nothing is kept while the LISTEN connection is down.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { and, desc, eq, inArray } from 'drizzle-orm';
import pg from 'pg';
import { auditEvents, scans } from '../platform/db/schema.js';
import { writeGenerationOf } from '../platform/db/index.js';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { seedScans } from '../bench/seed.js';
import { listScans } from './service.js';
import { FIXTURES, uploadRequest } from './test-support.js';

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));

interface ListAnswer {
  scans: { _id: string; status: string; patientId: string }[];
  totalScans: number;
}

for (const kind of await databaseKinds()) {
  describe(`kept list pages follow every change (${kind})`, () => {
    let t: TestApp;
    let admin: TestUser;
    let doctor: TestUser;
    let other: TestUser;
    let other2: TestUser;
    let prefix: string;

    before(async () => {
      t = await createTestApp(kind);
      [admin, doctor, other, other2] = await Promise.all([t.user({ role: 'admin' }), t.user(), t.user(), t.user()]);
      prefix = `${uniqueId('KEPT')}-`;
      await seedScans(t.database.db, { doctorId: doctor.id, patients: 3, scans: 12, patientPrefix: prefix });
    });
    after(() => t.close());

    const list = async (user: TestUser, query = 'limit=50') => {
      const res = await t.app.inject({ url: `/api/scans?${query}`, headers: user.auth });
      assert.equal(res.statusCode, 200, res.body);
      return res.json<ListAnswer>();
    };

    test('pages are kept on both databases (a write generation, live)', () => {
      assert.notEqual(writeGenerationOf(t.database.db)?.live?.(), false);
    });

    /** Polls until `check` holds, for up to 5 s: a NOTIFY arrives a moment after its commit. */
    const eventually = async (what: string, check: () => Promise<boolean>) => {
      const deadline = Date.now() + 5_000;
      while (!(await check())) {
        if (Date.now() > deadline) assert.fail(`${what}: not within 5 s`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };

    test('PostgreSQL: a change another process commits shows once its NOTIFY arrives; until one arrives the page is kept', async () => {
      if (kind !== 'postgres') return;
      const other = new pg.Client({ connectionString: t.database.connectionString! });
      await other.connect();
      try {
        const [first] = (await list(doctor)).scans;
        const statusOf = async () => (await list(doctor)).scans.find((s) => s._id === first!._id)?.status;
        // A change that fires no trigger (as a replica applies it): nothing tells this process,
        // so the kept page still shows the old status; this is what proves the page is kept.
        await other.query('set session_replication_role = replica');
        await other.query(`update scans set status = 'failed', failure_reason = 'unseen' where id = $1`, [first!._id]);
        await other.query('set session_replication_role = origin');
        assert.notEqual(await statusOf(), 'failed');
        await other.query(`select pg_notify('imagemedix_reads', '')`);
        await eventually('the notified change', async () => (await statusOf()) === 'failed');
        // An ordinary write of another connection notifies by itself (migration 0010).
        await other.query(`update scans set status = 'completed', failure_reason = null where id = $1`, [first!._id]);
        await eventually('the committed change', async () => (await statusOf()) === 'completed');
        // Assigning a doctor in another process: the new doctor's page follows.
        assert.equal((await list(other2)).totalScans, 0);
        await other.query(`insert into patient_doctors (patient_id, doctor_id) select patient_id, $1 from scans where id = $2`, [other2.id, first!._id]);
        await eventually("the other doctor's page", async () => (await list(other2)).totalScans > 0);
      } finally {
        await other.end();
      }
    });

    test('PostgreSQL: with the LISTEN connection cut, no page older than a change is served', async () => {
      if (kind !== 'postgres') return;
      const other = new pg.Client({ connectionString: t.database.connectionString! });
      await other.connect();
      try {
        const [first] = (await list(doctor)).scans;
        const statusOf = async () => (await list(doctor)).scans.find((s) => s._id === first!._id)?.status;
        await other.query(
          `select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and query = 'LISTEN "imagemedix_reads"'`,
        );
        // A change nothing notifies: seen once the cut is noticed (every page read meanwhile)
        // or the connection is back (everything kept before it dropped).
        await other.query('set session_replication_role = replica');
        await other.query(`update scans set status = 'pending' where id = $1`, [first!._id]);
        await other.query('set session_replication_role = origin');
        await eventually('the change made while notifications were cut', async () => (await statusOf()) === 'pending');
        await eventually('notifications back', async () => writeGenerationOf(t.database.db)?.live?.() === true);
        await other.query(`update scans set status = 'completed' where id = $1`, [first!._id]);
        await eventually('a change after the reconnection', async () => (await statusOf()) === 'completed');
      } finally {
        await other.end();
      }
    });

    test('the audit rows every request writes do not drop the kept pages (PGlite)', async () => {
      const generation = writeGenerationOf(t.database.db);
      if (!generation) return;
      await list(doctor);
      await t.ctx.audit.write([{ action: 'scan.list', resourceType: 'scan', outcome: 'success', patientIds: [] }]);
      const before = generation.current();
      await list(doctor);
      await list(doctor);
      assert.equal(generation.current(), before, 'two list requests and their audit rows moved the generation');
    });

    test("a kept page's views are rebuilt when its links change (a new expiry step)", async () => {
      let step = 1;
      const links = { file: (key: string) => `/files/${key}?step=${step}`, report: () => '', handedOut: () => undefined };
      const read = () => listScans(t.database.db, { viewer: { id: doctor.id, role: 'doctor' }, query: { page: 1, limit: 10 }, links });
      const first = await read();
      assert.equal(first.scans.length, 10);
      assert.equal((await read()).scans[0], first.scans[0], 'the same page and links: the views are kept');
      step = 2;
      const later = await read();
      assert.deepEqual(
        later.scans.map((s) => s._id),
        first.scans.map((s) => s._id),
      );
      assert.ok(later.scans.every((s) => s.imageUrl.endsWith('?step=2') && s.thumbnailUrl.endsWith('?step=2')));
    });

    test("a kept page's links are recorded as handed out on every request, not only when the page is read", async () => {
      // The views of a kept page are reused (keptViews), but each answer hands out its links
      // anew: the audit trail's link.issue event must name every scan and kind of each answer.
      const issued = async () => {
        const rows = await t.database.db
          .select({ detail: auditEvents.detail })
          .from(auditEvents)
          .where(and(eq(auditEvents.actorId, doctor.id), eq(auditEvents.action, 'link.issue')))
          .orderBy(desc(auditEvents.at));
        return rows.map((r) => r.detail as { via: string; scans: number; kinds: string[] });
      };
      const before = (await issued()).length;
      for (let i = 0; i < 3; i++) assert.equal((await list(doctor, 'limit=10')).scans.length, 10);
      const events = (await issued()).slice(0, (await issued()).length - before);
      assert.equal(events.length, 3);
      for (const e of events) assert.deepEqual({ via: e.via, scans: e.scans, kinds: e.kinds }, { via: 'scan.list', scans: 10, kinds: ['image', 'thumbnail'] });
    });

    test('another viewer never gets a page kept for someone else', async () => {
      assert.equal((await list(doctor)).totalScans, 12);
      assert.equal((await list(doctor)).totalScans, 12);
      const theirs = await list(other);
      assert.equal(theirs.totalScans, 0);
      assert.deepEqual(theirs.scans, []);
      assert.ok((await list(admin)).totalScans >= 12);
    });

    test('a status changed by a statement or in a transaction shows on the next page', async () => {
      const [first] = (await list(doctor)).scans;
      await t.database.db.update(scans).set({ status: 'failed', failureReason: 'kept-test' }).where(eq(scans.id, first!._id));
      assert.equal((await list(doctor)).scans.find((s) => s._id === first!._id)?.status, 'failed');
      await t.database.db.transaction(async (tx) => {
        await tx.update(scans).set({ status: 'completed', failureReason: null }).where(eq(scans.id, first!._id));
      });
      assert.equal((await list(doctor)).scans.find((s) => s._id === first!._id)?.status, 'completed');
    });

    test('a read in flight when a write starts is not kept past it', async () => {
      const [first] = (await list(doctor)).scans;
      const before = list(doctor);
      const write = t.database.db.update(scans).set({ status: 'pending' }).where(eq(scans.id, first!._id));
      await Promise.all([before, write]);
      assert.equal((await list(doctor)).scans.find((s) => s._id === first!._id)?.status, 'pending');
    });

    test("a list filtered by patient follows an assignment at once, both ways (the patient's lookup is kept too)", async () => {
      const query = `limit=50&patientId=${prefix}2`;
      assert.equal((await list(doctor, query)).totalScans, 4);
      assert.equal((await list(other, query)).totalScans, 0);
      assert.equal((await list(other, query)).totalScans, 0);
      const assign = await t.app.inject({ method: 'POST', url: `/api/patients/${prefix}2/assign-doctor`, headers: admin.auth, payload: { doctorId: other.id } });
      assert.equal(assign.statusCode, 200, assign.body);
      assert.equal((await list(other, query)).totalScans, 4);
      const unassign = await t.app.inject({ method: 'DELETE', url: `/api/patients/${prefix}2/assign-doctor/${other.id}`, headers: admin.auth });
      assert.equal(unassign.statusCode, 200, unassign.body);
      const after = await list(other, query);
      assert.equal(after.totalScans, 0);
      assert.deepEqual(after.scans, []);
      assert.equal((await list(doctor, query)).totalScans, 4);
    });

    test('PostgreSQL: the patient a list is filtered by is kept with its pages, and follows a change once notified', async () => {
      if (kind !== 'postgres') return;
      const patientId = `${prefix}3`;
      const renamed = `${prefix}3-renamed`;
      const byPatient = async (id: string) => (await list(doctor, `limit=50&patientId=${id}`)).totalScans;
      const other = new pg.Client({ connectionString: t.database.connectionString! });
      await other.connect();
      try {
        assert.equal(await byPatient(patientId), 4);
        // A change that fires no trigger: the kept lookup still resolves the old hospital id.
        await other.query('set session_replication_role = replica');
        await other.query('update patients set patient_id = $2 where patient_id = $1', [patientId, renamed]);
        await other.query('set session_replication_role = origin');
        assert.equal(await byPatient(patientId), 4, 'the lookup was not kept');
        await other.query(`select pg_notify('imagemedix_reads', '')`);
        await eventually('the notified rename', async () => (await byPatient(patientId)) === 0);
        assert.equal(await byPatient(renamed), 4);
        // And back by an ordinary write, which notifies by itself.
        await other.query('update patients set patient_id = $1 where patient_id = $2', [patientId, renamed]);
        await eventually('the rename back', async () => (await byPatient(patientId)) === 4);
        assert.equal(await byPatient(renamed), 0);
      } finally {
        await other.end();
      }
    });

    test("PostgreSQL: an upload in one statement notifies the other processes' kept pages at its commit", async () => {
      if (kind !== 'postgres') return;
      // The upload's statement (repository.ts uploadStatement) writes the scan with its analysis,
      // jobs and audit rows in data-modifying CTEs: its tables' triggers (migration 0010) must
      // still queue the NOTIFY, or another API process would keep a list without the new scan.
      const listener = new pg.Client({ connectionString: t.database.connectionString! });
      await listener.connect();
      const heard: string[] = [];
      listener.on('notification', (n) => {
        if (n.channel === 'imagemedix_reads') heard.push(n.payload ?? '');
      });
      await listener.query('listen imagemedix_reads');
      try {
        const uploader = await t.user();
        const patient = await t.patient(uploader, { name: 'Notified Upload' });
        // Notifications arrive in commit order: once this one is heard, those of the writes
        // above have been, and any heard after it are the upload's.
        await listener.query(`select pg_notify('imagemedix_reads', 'mark')`);
        await eventually('the mark', () => Promise.resolve(heard.includes('mark')));
        const before = heard.length;
        const res = await t.app.inject(uploadRequest(uploader, { data: JPEG, fields: { patientId: patient.patientId } }));
        assert.equal(res.statusCode, 201, res.body);
        await eventually("the upload's notification", () => Promise.resolve(heard.length > before));
      } finally {
        await listener.end();
      }
    });

    test('assigning and un-assigning a patient shows at once in both doctors\' lists', async () => {
      const patientId = `${prefix}1`;
      const mine = (await list(doctor)).scans.filter((s) => s.patientId === patientId);
      assert.equal(mine.length, 4);
      assert.equal((await list(other)).totalScans, 0);
      const assign = await t.app.inject({ method: 'POST', url: `/api/patients/${patientId}/assign-doctor`, headers: admin.auth, payload: { doctorId: other.id } });
      assert.equal(assign.statusCode, 200, assign.body);
      assert.deepEqual((await list(other)).scans.map((s) => s._id).sort(), mine.map((s) => s._id).sort());
      const unassign = await t.app.inject({ method: 'DELETE', url: `/api/patients/${patientId}/assign-doctor/${doctor.id}`, headers: admin.auth });
      assert.equal(unassign.statusCode, 200, unassign.body);
      const after = await list(doctor);
      assert.equal(after.totalScans, 8);
      assert.ok(after.scans.every((s) => s.patientId !== patientId));
      // And a scan deleted outright leaves the page of the doctor who still sees the rest.
      const gone = after.scans.slice(0, 2).map((s) => s._id);
      await t.database.db.delete(scans).where(inArray(scans.id, gone));
      const later = await list(doctor);
      assert.equal(later.totalScans, 6);
      assert.ok(later.scans.every((s) => !gone.includes(s._id)));
    });
  });
}
