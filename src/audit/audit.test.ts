/**
 * The audit trail (issue 12, item 5): what is recorded, what never is, the admin's view with
 * its filters, and the trigger that keeps it append-only.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { sql } from 'drizzle-orm';
import { FIXTURES, uploadRequest } from '../scans/test-support.js';
import { uniqueId, useTestApp, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { groupCommit } from './log.js';
import type { NewAuditRow } from './repository.js';
import { databaseKinds } from '../../test/helpers/db.js';

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));

interface Event {
  _id: string;
  actor: { _id: string; role: string | null } | null;
  action: string;
  resourceType: string;
  resourceId: string | null;
  patientIds: string[];
  ip: string | null;
  outcome: string;
  statusCode: number | null;
  detail: Record<string, unknown> | null;
}

for (const kind of await databaseKinds()) {
  describe(`audit trail (${kind})`, () => {
    let t: TestApp;
    let admin: TestUser;
    let doctor: TestUser;
    let other: TestUser;
    useTestApp(kind, {
      async setup(app) {
        t = app;
        admin = await t.user({ role: 'admin' });
        doctor = await t.user();
        other = await t.user();
      },
    });

    async function events(query: string): Promise<{ events: Event[]; totalEvents: number; totalPages: number }> {
      const res = await t.app.inject({ method: 'GET', url: `/api/audit?${query}`, headers: admin.auth });
      assert.equal(res.statusCode, 200, res.body);
      return res.json();
    }

    test('reads, changes, exports, deletions and refusals of patient data are recorded with who, what, where and how it ended', async () => {
      const p = await t.patient(doctor, { name: 'Audit Patient' });
      await t.app.inject({ method: 'GET', url: `/api/patients/${p._id}`, headers: doctor.auth });
      await t.app.inject({ method: 'GET', url: `/api/patients/${p._id}`, headers: other.auth, remoteAddress: '10.9.9.9' });
      await t.app.inject({ method: 'PATCH', url: `/api/patients/${p._id}`, headers: doctor.auth, payload: { contact: { phone: '555-0100' } } });
      await t.app.inject({ method: 'POST', url: `/api/patients/${p._id}/notes`, headers: doctor.auth, payload: { content: 'Confidential note' } });
      const up = await t.app.inject(uploadRequest(doctor, { data: JPEG, fields: { patientId: p.patientId, scanType: 'brain-mri' } }));
      const scan = up.json();
      const image = await t.app.inject({ method: 'GET', url: new URL(scan.imageUrl as string, 'http://x').pathname + new URL(scan.imageUrl as string, 'http://x').search });
      assert.equal(image.statusCode, 200);
      const report = await t.app.inject({ method: 'POST', url: `/api/scans/${scan._id}/report`, headers: doctor.auth });
      assert.equal(report.statusCode, 201);
      await t.app.inject({ method: 'GET', url: '/api/patients', headers: doctor.auth });
      // The original pixels are a read too (none for a JPEG: 409, recorded as such).
      assert.equal((await t.app.inject({ method: 'GET', url: `/api/scans/${scan._id}/pixels`, headers: doctor.auth })).statusCode, 409);
      // An admin's un-assignment, with the doctor it removed.
      await t.app.inject({ method: 'POST', url: `/api/patients/${p._id}/assign-doctor`, headers: admin.auth, payload: { doctorId: other.id } });
      const unassigned = await t.app.inject({ method: 'DELETE', url: `/api/patients/${p._id}/assign-doctor/${other.id}`, headers: admin.auth });
      assert.equal(unassigned.statusCode, 200, unassigned.body);

      const { events: trail } = await events(`patientId=${p.patientId}&limit=100`);
      const seen = (action: string, outcome = 'success') => trail.find((e) => e.action === action && e.outcome === outcome);
      const read = seen('patient.read');
      assert.ok(read);
      assert.deepEqual(read.actor, { _id: doctor.id, role: 'doctor' });
      assert.equal(read.resourceType, 'patient');
      assert.equal(read.resourceId, p._id);
      assert.deepEqual(read.patientIds, [p._id]);
      assert.equal(read.statusCode, 200);
      const probe = seen('patient.read', 'not_found');
      assert.ok(probe, "another doctor's refused read is recorded");
      assert.equal(probe.actor?._id, other.id);
      assert.equal(probe.ip, '10.9.9.9');
      assert.deepEqual(seen('patient.update')?.detail, { fields: ['contact'] });
      assert.ok(seen('patient.add_note'));
      assert.ok(seen('scan.upload'));
      const download = seen('file.download');
      assert.ok(download, 'a download by signed link is recorded as the user the link was issued to');
      assert.equal(download.actor?._id, doctor.id);
      assert.equal(download.resourceId, scan._id);
      assert.ok(seen('report.create'));
      // Handing out signed links is an export of its own, apart from downloading through them.
      const issued = trail.filter((e) => e.action === 'link.issue' && e.resourceId === scan._id);
      const via = (action: string) => issued.find((e) => e.detail?.via === action);
      assert.deepEqual(via('scan.upload')?.detail?.kinds, ['image', 'thumbnail']);
      assert.deepEqual(via('report.create')?.detail?.kinds, ['report']);
      assert.equal(via('report.create')?.actor?._id, doctor.id, 'the link was issued to the doctor who asked');
      assert.deepEqual(via('report.create')?.patientIds, [p._id]);
      assert.equal(via('report.create')?.detail?.expiresInSeconds, t.config.signedUrlTtlSeconds);
      const listed = await t.app.inject({ method: 'GET', url: '/api/scans', headers: doctor.auth });
      assert.equal(listed.statusCode, 200);
      const exports = (await events(`action=link.issue&userId=${doctor.id}`)).events;
      assert.ok(exports.some((e) => e.detail?.via === 'scan.list' && e.patientIds.includes(p._id)));
      // A refusal hands out no link, so it records no export.
      await t.app.inject({ method: 'GET', url: `/api/scans/${scan._id}`, headers: other.auth });
      assert.ok(!(await events(`action=link.issue&userId=${other.id}`)).events.length);
      assert.deepEqual(seen('scan.read_pixels', 'invalid')?.patientIds, [p._id]);
      assert.deepEqual(seen('patient.unassign_doctor')?.detail, { doctorId: other.id });
      assert.ok(seen('patient.assign_doctor'));
      const list = seen('patient.list');
      assert.ok(list && list.patientIds.includes(p._id) && typeof list.detail?.count === 'number');

      // Deletion: recorded with the patient it removed, and the history stays.
      await t.app.inject({ method: 'DELETE', url: `/api/patients/${p._id}`, headers: admin.auth });
      const afterDelete = await events(`patientId=${p._id}&action=patient.delete`);
      assert.equal(afterDelete.events.length, 1);
      assert.equal(afterDelete.events[0]!.actor?._id, admin.id);
      assert.ok((await events(`patientId=${p._id}`)).totalEvents >= trail.length, 'deleting a patient keeps its trail');
    });

    test('sign-ins, failed sign-ins and changes of role or status are recorded; never a password or token', async () => {
      const u = await t.user();
      await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: u.email, password: u.password } });
      await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: u.email, password: 'wrong-password-123' } });
      await t.app.inject({ method: 'PATCH', url: `/api/users/users/${u.id}`, headers: admin.auth, payload: { role: 'admin' } });
      await t.app.inject({ method: 'PATCH', url: `/api/users/users/${u.id}`, headers: admin.auth, payload: { isActive: false, password: 'new-Password-horse-42' } });
      const logins = (await events(`action=auth.login&resourceId=${u.id}`)).events;
      assert.deepEqual(logins.map((e) => e.outcome).sort(), ['denied', 'success']);
      assert.equal(logins.find((e) => e.outcome === 'success')?.actor?._id, u.id);
      assert.equal(logins.find((e) => e.outcome === 'denied')?.actor, null);
      const changes = (await events(`action=user.update&resourceId=${u.id}`)).events;
      assert.equal(changes.length, 2);
      assert.ok(changes.some((e) => e.detail?.role === 'admin'));
      const status = changes.find((e) => e.detail?.isActive === false);
      assert.deepEqual(status?.detail?.fields, ['isActive', 'password (changed)']);
      const everything = JSON.stringify(await t.database.db.execute(sql`select * from audit_events`));
      for (const secret of [u.password, 'wrong-password-123', 'new-Password-horse-42', u.token, doctor.token, 'argon2']) {
        assert.ok(!everything.includes(secret), 'the trail holds no password, hash or token');
      }
    });

    test('filters by user, action, outcome and time, paginated; admins only', async () => {
      const mine = await events(`userId=${doctor.id}&limit=2&page=1`);
      assert.ok(mine.totalEvents >= 3);
      assert.equal(mine.events.length, 2);
      assert.ok(mine.events.every((e) => e.actor?._id === doctor.id));
      const page2 = await events(`userId=${doctor.id}&limit=2&page=2`);
      assert.notEqual(page2.events[0]?._id, mine.events[0]?._id);
      const future = await events(`from=${encodeURIComponent(new Date(Date.now() + 3_600_000).toISOString())}`);
      assert.equal(future.totalEvents, 0);
      const denied = await events('outcome=not_found');
      assert.ok(denied.events.every((e) => e.outcome === 'not_found'));
      assert.equal((await t.app.inject({ method: 'GET', url: '/api/audit', headers: doctor.auth })).statusCode, 403);
      assert.equal((await t.app.inject({ method: 'GET', url: '/api/audit' })).statusCode, 401);
      const bad = await t.app.inject({ method: 'GET', url: '/api/audit?from=0000-01-01T00:00:00Z', headers: admin.auth });
      assert.equal(bad.statusCode, 400);
      assert.ok((await events('action=audit.read')).totalEvents >= 1, 'reading the trail is recorded');
    });

    test('the trail is append-only: UPDATE, DELETE and TRUNCATE are refused by the database', async () => {
      await t.patient(doctor);
      const db = t.database.db;
      await assert.rejects(db.execute(sql`update audit_events set action = 'patient.nothing'`), (err: Error) =>
        /append-only/.test(String((err.cause as Error | undefined)?.message ?? err.message)),
      );
      await assert.rejects(db.execute(sql`delete from audit_events`));
      await assert.rejects(db.execute(sql`truncate audit_events`));
      const r = await db.execute(sql`select count(*)::int as n from audit_events where action = 'patient.nothing'`);
      assert.equal(((Array.isArray(r) ? r : (r as { rows: unknown[] }).rows) as { n: number }[])[0]!.n, 0);
      assert.ok(uniqueId());
    });
  });
}

for (const kind of await databaseKinds()) {
  describe(`audit trail on a slow or failing database (${kind})`, () => {
    let t: TestApp;
    let doctor: TestUser;
    let broken = false;
    let slowMs = 0;
    useTestApp(kind, {
      build: (ctx) => {
        const real = ctx.audit;
        ctx.audit = {
          write: async (rows) => {
            if (broken) throw new Error('could not extend file "base/16384/24601": No space left on device');
            if (slowMs > 0) await new Promise((resolve) => setTimeout(resolve, slowMs));
            await real.write(rows);
          },
        };
        return {};
      },
      async setup(app) {
        t = app;
        doctor = await t.user();
      },
    });

    test('each event is committed before its answer leaves, however slow the write: a crash after the answer loses nothing', async () => {
      const p = await t.patient(doctor);
      slowMs = 150;
      try {
        for (let i = 1; i <= 3; i++) {
          const res = await t.app.inject({ method: 'GET', url: `/api/patients/${p._id}`, headers: doctor.auth });
          assert.equal(res.statusCode, 200);
          // Straight from the table, the moment the answer has arrived: no flush, no wait.
          const r = await t.database.db.execute(
            sql`select count(*)::int as n from audit_events where action = 'patient.read' and resource_id = ${p._id}`,
          );
          assert.equal(((Array.isArray(r) ? r : (r as { rows: unknown[] }).rows) as { n: number }[])[0]!.n, i);
        }
      } finally {
        slowMs = 0;
      }
    });

    test('the answer is withheld (503 {"error"}): no patient data and no file leaves without its trace', async () => {
      const p = await t.patient(doctor, { name: 'Withheld Patient' });
      const up = await t.app.inject(uploadRequest(doctor, { data: JPEG, fields: { patientId: p.patientId, scanType: 'brain-mri' } }));
      assert.equal(up.statusCode, 201, up.body);
      const image = new URL(up.json().imageUrl as string, 'http://x');
      broken = true;
      try {
        const read = await t.app.inject({ method: 'GET', url: `/api/patients/${p._id}`, headers: doctor.auth });
        assert.equal(read.statusCode, 503);
        assert.match(read.json().error, /audit trail/);
        assert.equal(read.headers['retry-after'], '30');
        assert.ok(!read.body.includes('Withheld Patient') && !read.body.includes(p.patientId));
        const file = await t.app.inject({ method: 'GET', url: image.pathname + image.search });
        assert.equal(file.statusCode, 503);
        assert.match(String(file.headers['content-type']), /application\/json/);
        assert.ok(file.rawPayload.length < 500, 'no image bytes');
      } finally {
        broken = false;
      }
      // The server keeps serving once the trail can be written again.
      assert.equal((await t.app.inject({ method: 'GET', url: `/api/patients/${p._id}`, headers: doctor.auth })).statusCode, 200);
    });
  });
}

describe('audit writes of concurrent requests (group commit)', () => {
  const row = (action: string): NewAuditRow => ({ action, resourceType: 'scan', outcome: 'success', patientIds: [] });

  test('requests that finish together share one INSERT, and none is answered before its rows are stored', async () => {
    const inserts: string[][] = [];
    let release!: () => void;
    const stored = new Promise<void>((resolve) => (release = resolve));
    const log = groupCommit(async (rows) => {
      inserts.push(rows.map((r) => r.action));
      await stored;
    });
    const done: string[] = [];
    const writes = ['a', 'b', 'c', 'd'].map((a) => log.write([row(a)]).then(() => done.push(a)));
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(inserts, [['a', 'b', 'c', 'd']]);
    assert.deepEqual(done, [], 'no write resolves while its INSERT is uncommitted');
    release();
    await Promise.all(writes);
    assert.deepEqual(done.sort(), ['a', 'b', 'c', 'd']);
  });

  test("one request's row that cannot be stored withholds only that answer; a database that is down withholds all", async () => {
    let down = false;
    const log = groupCommit(async (rows) => {
      if (down || rows.some((r) => r.action === 'bad')) throw new Error('insert failed');
    });
    const results = await Promise.allSettled(['ok-1', 'bad', 'ok-2'].map((a) => log.write([row(a)])));
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    down = true;
    const all = await Promise.allSettled(['ok-3', 'ok-4'].map((a) => log.write([row(a)])));
    assert.deepEqual(all.map((r) => r.status), ['rejected', 'rejected']);
  });
});
