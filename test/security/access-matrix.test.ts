/**
 * The access matrix (issue 12): every route of the application, called as an anonymous
 * client, a deactivated user, the doctor assigned to the patient, a doctor who is not, and an
 * admin, with the status each must get. It fails when a route exists without a row (routes are
 * enumerated from Fastify's onRoute hook, app.routeTable) and when a row names no route.
 *
 * To add a row for a new route: add an entry to ROWS keyed "METHOD /url/pattern" exactly as
 * Fastify registers it (the failure message lists the missing keys), give `call` the request
 * to send for a principal (use the fixtures in `f`: patient, scan, webhook, links...), and
 * `expect` the status for each of anonymous, deactivated, assigned, unassigned and admin.
 * A route that destroys its target gets a fresh one from `fresh` for each principal.
 * "Not yours" must be the same 404 as "not there": never 403 for an unassigned doctor on a
 * patient or scan (403 is only for admin-only routes).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { InjectOptions } from 'fastify';
import { FIXTURES, uploadRequest } from '../../src/scans/test-support.js';
import { findUserById } from '../../src/users/repository.js';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../helpers/app.js';
import { databaseKinds } from '../helpers/db.js';

type Principal = 'anonymous' | 'deactivated' | 'assigned' | 'unassigned' | 'admin';
const PRINCIPALS: Principal[] = ['anonymous', 'deactivated', 'unassigned', 'assigned', 'admin'];

interface Fixtures {
  t: TestApp;
  users: Record<Exclude<Principal, 'anonymous'>, TestUser>;
  patient: { _id: string; patientId: string };
  scanId: string;
  webhookId: string;
  /** A signed link to the scan image and to its report, issued to the given user. */
  imageLink(userId: string): string;
  reportLink(userId: string): string;
}

type Expect = Record<Principal, number>;
interface Row {
  /** The request, as this principal; `target` is what `fresh` made (if anything). */
  call(f: Fixtures, as: Principal, target: string | null): InjectOptions | Promise<InjectOptions>;
  /** A new target for each principal (routes that delete or change it for good). */
  fresh?(f: Fixtures): Promise<string>;
  expect: Expect;
}

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));
const all = (status: number): Expect => ({ anonymous: status, deactivated: status, assigned: status, unassigned: status, admin: status });
/** Any signed-in user; anonymous and deactivated get 401. */
const signedIn = (status: number): Expect => ({ anonymous: 401, deactivated: 401, assigned: status, unassigned: status, admin: status });
/** A patient's or scan's own data: the unassigned doctor gets the 404 of "not there". */
const patientData = (status: number): Expect => ({ anonymous: 401, deactivated: 401, assigned: status, unassigned: 404, admin: status });
const adminOnly = (status: number): Expect => ({ anonymous: 401, deactivated: 401, assigned: 403, unassigned: 403, admin: status });

const json = (method: InjectOptions['method'], url: string, payload?: object): InjectOptions => ({ method, url, payload });

const ROWS: Record<string, Row> = {
  // Public: health, API docs (API_DOCS=on, the default).
  'GET /healthz': { call: () => json('GET', '/healthz'), expect: all(200) },
  'GET /readyz': { call: () => json('GET', '/readyz'), expect: all(200) },
  'GET /openapi.json': { call: () => json('GET', '/openapi.json'), expect: all(200) },
  'GET /docs': { call: () => json('GET', '/docs'), expect: all(200) },
  'GET /docs/json': { call: () => json('GET', '/docs/json'), expect: all(200) },
  'GET /docs/yaml': { call: () => json('GET', '/docs/yaml'), expect: all(200) },
  'GET /docs/static/index.html': { call: () => json('GET', '/docs/static/index.html'), expect: all(302) },
  'GET /docs/static/swagger-initializer.js': { call: () => json('GET', '/docs/static/swagger-initializer.js'), expect: all(200) },
  'GET /docs/static/*': { call: () => json('GET', '/docs/static/swagger-ui.css'), expect: all(200) },

  // Authentication. Login "as" a principal uses that principal's own email and password.
  'POST /api/auth/login': {
    call: (f, as) =>
      as === 'anonymous'
        ? json('POST', '/api/auth/login', { email: 'nobody@hospital.test', password: 'not-a-password' })
        : json('POST', '/api/auth/login', { email: f.users[as].email, password: f.users[as].password }),
    expect: { anonymous: 401, deactivated: 403, assigned: 200, unassigned: 200, admin: 200 },
  },
  'POST /api/auth/logout': { call: () => json('POST', '/api/auth/logout'), expect: signedIn(200) },
  // Changes the principal's own password (then the fixture remembers the new one).
  'POST /api/auth/password': {
    call: (f, as) => {
      const next = `harbour-Violet-${randomUUID().slice(0, 8)}`;
      if (as === 'anonymous') return json('POST', '/api/auth/password', { currentPassword: 'whatever-it-was-1', newPassword: next });
      const u = f.users[as];
      const body = { currentPassword: u.password, newPassword: next };
      if (as !== 'deactivated') u.password = next;
      return json('POST', '/api/auth/password', body);
    },
    expect: signedIn(200),
  },
  'GET /api/auth/me': { call: () => json('GET', '/api/auth/me'), expect: signedIn(200) },
  // Not configured in tests: the same answer for everyone.
  'GET /api/auth/google': { call: () => json('GET', '/api/auth/google'), expect: all(404) },
  'GET /api/auth/google/callback': { call: () => json('GET', '/api/auth/google/callback?code=x&state=y'), expect: all(404) },

  // Users (admin only).
  'GET /api/users/users': { call: () => json('GET', '/api/users/users'), expect: adminOnly(200) },
  'POST /api/users/users': {
    call: () => json('POST', '/api/users/users', { name: 'New Doctor', email: `new-${randomUUID()}@hospital.test`, password: 'lantern-orbit-Quiche-71' }),
    expect: adminOnly(201),
  },
  'PATCH /api/users/users/:id': {
    fresh: async (f) => (await f.t.user()).id,
    call: (_f, _as, id) => json('PATCH', `/api/users/users/${id}`, { specialization: 'Neurology' }),
    expect: adminOnly(200),
  },
  'POST /api/users/users/:id/unlock': {
    call: (f) => json('POST', `/api/users/users/${f.users.assigned.id}/unlock`),
    expect: adminOnly(200),
  },
  'GET /api/users/ip-locks': { call: () => json('GET', '/api/users/ip-locks'), expect: adminOnly(200) },
  'POST /api/users/ip-locks/:ip/unlock': {
    // An address locked for each principal (LOGIN_MAX_FAILURES_PER_IP is 5 here).
    fresh: async (f) => {
      const ip = `10.77.${Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}`;
      for (let i = 0; i < 5; i++) await f.t.ctx.loginThrottle.recordFailure(`matrix-${randomUUID()}@hospital.test`, ip);
      return ip;
    },
    call: (_f, _as, ip) => json('POST', `/api/users/ip-locks/${ip}/unlock`),
    expect: adminOnly(200),
  },

  // Patients.
  'GET /api/patients': { call: () => json('GET', '/api/patients'), expect: signedIn(200) },
  'GET /api/patients/:id': { call: (f) => json('GET', `/api/patients/${f.patient._id}`), expect: patientData(200) },
  'POST /api/patients': {
    call: () => json('POST', '/api/patients', { patientId: uniqueId(), name: 'Matrix Patient' }),
    expect: signedIn(201),
  },
  'PATCH /api/patients/:id': {
    call: (f) => json('PATCH', `/api/patients/${f.patient._id}`, { status: 'active' }),
    expect: patientData(200),
  },
  'POST /api/patients/:id/medical-history': {
    call: (f) => json('POST', `/api/patients/${f.patient._id}/medical-history`, { condition: 'Migraine' }),
    expect: patientData(201),
  },
  'POST /api/patients/:id/notes': {
    call: (f) => json('POST', `/api/patients/${f.patient._id}/notes`, { content: 'Reviewed.' }),
    expect: patientData(201),
  },
  'POST /api/patients/:id/assign-doctor': {
    call: (f) => json('POST', `/api/patients/${f.patient._id}/assign-doctor`, { doctorId: f.users.assigned.id }),
    expect: adminOnly(200),
  },
  'DELETE /api/patients/:id': {
    fresh: async (f) => (await f.t.patient(f.users.assigned))._id,
    call: (_f, _as, id) => json('DELETE', `/api/patients/${id}`),
    expect: adminOnly(200),
  },

  // Scans.
  'POST /api/scans': {
    call: () => uploadRequest(null, { data: JPEG, fields: { patientId: uniqueId(), patientName: 'Matrix Upload', scanType: 'brain-mri' } }),
    expect: signedIn(201),
  },
  'GET /api/scans': { call: () => json('GET', '/api/scans'), expect: signedIn(200) },
  'GET /api/scans/:id': { call: (f) => json('GET', `/api/scans/${f.scanId}`), expect: patientData(200) },
  'GET /api/scans/:id/status': { call: (f) => json('GET', `/api/scans/${f.scanId}/status`), expect: patientData(200) },
  'PATCH /api/scans/:id': {
    call: (f) => json('PATCH', `/api/scans/${f.scanId}`, { result: { additionalNotes: 'Matrix review' } }),
    expect: patientData(200),
  },
  'POST /api/scans/:id/annotations': {
    call: (f) => json('POST', `/api/scans/${f.scanId}/annotations`, { x: 1, y: 1, text: 'Matrix' }),
    expect: patientData(201),
  },
  'POST /api/scans/:id/report': { call: (f) => json('POST', `/api/scans/${f.scanId}/report`), expect: patientData(201) },
  'DELETE /api/scans/:id': {
    fresh: async (f) => {
      const res = await f.t.app.inject(
        uploadRequest(f.users.assigned, { data: JPEG, fields: { patientId: f.patient.patientId, scanType: 'brain-mri' } }),
      );
      return res.json()._id as string;
    },
    call: (_f, _as, id) => json('DELETE', `/api/scans/${id}`),
    expect: adminOnly(200),
  },

  // Signed links: no bearer token; "as" a principal means with a link issued to that principal
  // (anonymous: none at all). A deactivated user's link and an unassigned doctor's (forged
  // here with the server's key, as if they had held one) download nothing.
  'GET /files/*': {
    call: (f, as) => json('GET', as === 'anonymous' ? f.imageLink('').split('?')[0]! : f.imageLink(f.users[as].id)),
    expect: { anonymous: 403, deactivated: 403, assigned: 200, unassigned: 404, admin: 200 },
  },
  'GET /reports/:file': {
    call: (f, as) => json('GET', as === 'anonymous' ? f.reportLink('').split('?')[0]! : f.reportLink(f.users[as].id)),
    expect: { anonymous: 403, deactivated: 403, assigned: 200, unassigned: 404, admin: 200 },
  },

  // Analysis. The scan is a brain MRI: a chest analysis of it is a 409 to those who may see it,
  // and the 404 of "not there" to a doctor who may not.
  'POST /api/ml/brain/analyze': { call: (f) => json('POST', '/api/ml/brain/analyze', { scanId: f.scanId }), expect: patientData(200) },
  'POST /api/ml/chest/analyze': { call: (f) => json('POST', '/api/ml/chest/analyze', { scanId: f.scanId }), expect: patientData(409) },
  'GET /api/ml/status/:scanId': { call: (f) => json('GET', `/api/ml/status/${f.scanId}`), expect: patientData(200) },
  'GET /api/ml/models': { call: () => json('GET', '/api/ml/models'), expect: signedIn(200) },

  // Webhooks: each user manages their own; someone else's is "not there"; admins manage all.
  'POST /api/webhooks': {
    call: () => json('POST', '/api/webhooks', { url: 'https://hooks.example.org/in', events: ['scan.uploaded'] }),
    expect: signedIn(201),
  },
  'GET /api/webhooks': { call: () => json('GET', '/api/webhooks'), expect: signedIn(200) },
  'DELETE /api/webhooks/:id': {
    fresh: async (f) => {
      const res = await f.t.app.inject({
        ...json('POST', '/api/webhooks', { url: 'https://hooks.example.org/del', events: ['scan.uploaded'] }),
        headers: f.users.assigned.auth,
      });
      return res.json()._id as string;
    },
    call: (_f, _as, id) => json('DELETE', `/api/webhooks/${id}`),
    expect: patientData(200),
  },
  'GET /api/webhooks/:id/deliveries': { call: (f) => json('GET', `/api/webhooks/${f.webhookId}/deliveries`), expect: patientData(200) },

  'DELETE /api/patients/:id/assign-doctor/:doctorId': {
    // A patient with two doctors, so the un-assignment is allowed (never the last doctor).
    fresh: async (f) => {
      const p = await f.t.patient(f.users.assigned);
      const other = await f.t.user();
      await f.t.app.inject({ ...json('POST', `/api/patients/${p._id}/assign-doctor`, { doctorId: other.id }), headers: f.users.admin.auth });
      return `${p._id}/assign-doctor/${other.id}`;
    },
    call: (_f, _as, target) => json('DELETE', `/api/patients/${target}`),
    expect: adminOnly(200),
  },
  'GET /api/auth/google/enabled': { call: () => json('GET', '/api/auth/google/enabled'), expect: all(200) },
  // The fixture scan is a JPEG: no DICOM pixels to window (409) for those who may see it.
  'GET /api/scans/:id/pixels': { call: (f) => json('GET', `/api/scans/${f.scanId}/pixels`), expect: patientData(409) },
  'GET /api/scans/events': {
    // A finished scan: the stream sends its state and ends at once.
    fresh: async (f) => {
      const res = await f.t.app.inject(
        uploadRequest(f.users.assigned, { data: JPEG, fields: { patientId: f.patient.patientId, scanType: 'brain-mri' } }),
      );
      const id = res.json()._id as string;
      await f.t.app.inject({ ...json('PATCH', `/api/scans/${id}`, { status: 'completed' }), headers: f.users.assigned.auth });
      return id;
    },
    call: (_f, _as, id) => json('GET', `/api/scans/events?ids=${id}`),
    expect: patientData(200),
  },
  // CORS preflight (@fastify/cors) from the configured web origin: no credentials involved.
  'OPTIONS *': {
    call: () => ({
      method: 'OPTIONS',
      url: '/api/patients',
      headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'GET' },
    }),
    expect: all(204),
  },

  // The audit trail.
  'GET /api/audit': { call: () => json('GET', '/api/audit'), expect: adminOnly(200) },
};

/**
 * The web app's built files (present when web/dist was built): public, the same for everyone.
 * Matched by pattern because their names carry a content hash.
 */
const STATIC_FILE = /^GET \/(assets\/[^/]+|[A-Za-z0-9._-]+\.(svg|png|ico|txt|webmanifest|json))$/;
const staticRow = (key: string): Row => ({ call: () => json('GET', key.slice(4)), expect: all(200) });
const rowFor = (key: string): Row | undefined => ROWS[key] ?? (STATIC_FILE.test(key) && key !== 'GET /openapi.json' ? staticRow(key) : undefined);

for (const kind of await databaseKinds()) {
  describe(`access matrix: every route, five principals (${kind})`, () => {
    let f: Fixtures;
    before(async () => {
      const t = await createTestApp(kind, { env: { LOGIN_MAX_FAILURES_PER_IP: '5' } });
      const assigned = await t.user({ name: 'Dr Assigned' });
      const unassigned = await t.user({ name: 'Dr Unassigned' });
      const admin = await t.user({ role: 'admin' });
      const deactivated = await t.user({ name: 'Dr Gone' });
      const patient = await t.patient(assigned);
      const up = await t.app.inject(uploadRequest(assigned, { data: JPEG, fields: { patientId: patient.patientId, scanType: 'brain-mri' } }));
      assert.equal(up.statusCode, 201, up.body);
      const scanId = up.json()._id as string;
      const report = await t.app.inject({ method: 'POST', url: `/api/scans/${scanId}/report`, headers: assigned.auth });
      assert.equal(report.statusCode, 201, report.body);
      const reportPath = new URL(report.json().reportUrl as string, 'http://x').pathname;
      const imagePath = new URL(up.json().imageUrl as string, 'http://x').pathname;
      const hook = await t.app.inject({
        method: 'POST',
        url: '/api/webhooks',
        headers: assigned.auth,
        payload: { url: 'https://hooks.example.org/matrix', events: ['scan.uploaded'] },
      });
      // The deactivated user held a link and a token before being deactivated.
      const users = { assigned, unassigned, admin, deactivated };
      const links: Record<string, string> = {};
      const sign = (p: string, userId: string) => t.ctx.signer.sign(p, null, { userId: userId || randomUUID() });
      links.deactivatedImage = sign(imagePath, deactivated.id);
      links.deactivatedReport = sign(reportPath, deactivated.id);
      await t.app.inject({ method: 'PATCH', url: `/api/users/users/${deactivated.id}`, headers: admin.auth, payload: { isActive: false } });
      f = {
        t,
        users,
        patient,
        scanId,
        webhookId: hook.json()._id as string,
        imageLink: (userId) => (userId === deactivated.id ? links.deactivatedImage! : sign(imagePath, userId)),
        reportLink: (userId) => (userId === deactivated.id ? links.deactivatedReport! : sign(reportPath, userId)),
      };
    });
    after(() => f.t.close());

    test('every route has a row, and every row a route', () => {
      const routes = f.t.app.routeTable.map((r) => `${r.method} ${r.url}`);
      const missing = routes.filter((r) => !rowFor(r));
      assert.deepEqual(missing, [], `routes without a row in the access matrix (add them to ROWS): ${missing.join(', ')}`);
      const stale = Object.keys(ROWS).filter((k) => !routes.includes(k));
      assert.deepEqual(stale, [], `rows for routes that do not exist: ${stale.join(', ')}`);
    });

    test('each principal gets the expected status on each route, errors as {"error"}', async () => {
      const failures: string[] = [];
      const keys = [...Object.keys(ROWS), ...f.t.app.routeTable.map((r) => `${r.method} ${r.url}`).filter((k) => !(k in ROWS) && STATIC_FILE.test(k))];
      for (const key of keys) {
        const row = rowFor(key)!;
        for (const as of PRINCIPALS) {
          const target = row.fresh ? await row.fresh(f) : null;
          const req = await row.call(f, as, target);
          const headers: Record<string, string> = { ...(req.headers as Record<string, string> | undefined) };
          delete headers.authorization;
          if (as === 'deactivated') Object.assign(headers, f.users.deactivated.auth);
          else if (as !== 'anonymous' && !key.startsWith('GET /files') && !key.startsWith('GET /reports')) {
            // A fresh token each call: logout (a row above) ends the sessions issued before it.
            const row2 = await findUserById(f.t.database.db, f.users[as].id);
            headers.authorization = `Bearer ${await f.t.ctx.tokens.issue(row2!)}`;
          }
          const res = await f.t.app.inject({ ...req, headers });
          if ((key === 'POST /api/auth/logout' || key === 'POST /api/auth/password') && as !== 'anonymous' && as !== 'deactivated') {
            // Logout or a password change ended that user's sessions: the fixtures' own token for them is renewed.
            const renewed = await findUserById(f.t.database.db, f.users[as].id);
            f.users[as].token = await f.t.ctx.tokens.issue(renewed!);
            f.users[as].auth = { authorization: `Bearer ${f.users[as].token}` };
          }
          if (res.statusCode !== row.expect[as]) failures.push(`${key} as ${as}: ${res.statusCode} (expected ${row.expect[as]}) ${res.body.slice(0, 120)}`);
          if (res.statusCode >= 400 && typeof (JSON.parse(res.body || '{}') as { error?: unknown }).error !== 'string') {
            failures.push(`${key} as ${as}: ${res.statusCode} without {"error"}`);
          }
        }
      }
      assert.deepEqual(failures, []);
    });
  });
}
