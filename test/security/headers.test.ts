/**
 * Security headers on every answer, API_DOCS modes, and links that never follow a forged
 * Host header (issue 12, items 7 and 8).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { databaseKinds } from '../helpers/db.js';
import { createTestApp, useTestApp, type TestApp, type TestUser } from '../helpers/app.js';

function assertSecurityHeaders(headers: Record<string, unknown>, what: string): void {
  assert.equal(headers['x-content-type-options'], 'nosniff', what);
  assert.match(String(headers['strict-transport-security']), /max-age=\d{7,}; includeSubDomains/, what);
  assert.equal(headers['x-frame-options'], 'DENY', what);
  assert.equal(headers['referrer-policy'], 'no-referrer', what);
  const csp = String(headers['content-security-policy']);
  assert.match(csp, /default-src 'self'/, what);
  assert.match(csp, /frame-ancestors 'none'/, what);
  assert.match(csp, /object-src 'none'/, what);
}

for (const kind of await databaseKinds()) {
  describe(`security headers and API docs (${kind})`, () => {
    let t: TestApp;
    let doctor: TestUser;
    useTestApp(kind, {
      async setup(app) {
        t = app;
        doctor = await t.user();
      },
    });

    test('patient data, errors and the health check are no-store with the security headers', async () => {
      const p = await t.patient(doctor);
      const cases = [
        await t.app.inject({ method: 'GET', url: `/api/patients/${p._id}`, headers: doctor.auth }),
        await t.app.inject({ method: 'GET', url: '/api/patients', headers: doctor.auth }),
        await t.app.inject({ method: 'GET', url: '/api/patients' }),
        await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: doctor.auth }),
        await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: doctor.email, password: 'wrong-password' } }),
        await t.app.inject({ method: 'GET', url: '/no/such/route' }),
      ];
      for (const res of cases) {
        const what = `${res.statusCode} ${res.body.slice(0, 60)}`;
        assert.equal(res.headers['cache-control'], 'no-store', what);
        assertSecurityHeaders(res.headers, what);
      }
    });

    test('/docs works under its own CSP (hashes of its inline scripts) and /openapi.json is public by default', async () => {
      const page = await t.app.inject({ method: 'GET', url: '/docs/' });
      assert.equal(page.statusCode, 200);
      assert.match(page.body, /swagger-ui/i);
      const csp = String(page.headers['content-security-policy']);
      assert.match(csp, /script-src 'self'/);
      assert.doesNotMatch(csp, /upgrade-insecure-requests/);
      assert.equal(page.headers['x-content-type-options'], 'nosniff');
      const spec = await t.app.inject({ method: 'GET', url: '/openapi.json' });
      assert.equal(spec.statusCode, 200);
      assert.equal(spec.json().info.title, 'ImageMedix API');
    });
  });

  describe(`API_DOCS=off and API_DOCS=auth (${kind})`, () => {
    test('off: neither /docs nor /openapi.json exists', async () => {
      const t = await createTestApp(kind, { env: { API_DOCS: 'off' } });
      try {
        for (const url of ['/docs', '/docs/', '/openapi.json']) {
          const res = await t.app.inject({ method: 'GET', url });
          assert.equal(res.statusCode, 404, url);
          assert.equal(typeof res.json().error, 'string');
        }
      } finally {
        await t.close();
      }
    });

    test('auth: a bearer token or the email and password of an active user opens them', async () => {
      const t = await createTestApp(kind, { env: { API_DOCS: 'auth' } });
      try {
        const user = await t.user();
        for (const url of ['/docs/', '/openapi.json']) {
          const anonymous = await t.app.inject({ method: 'GET', url });
          assert.equal(anonymous.statusCode, 401, url);
          assert.match(String(anonymous.headers['www-authenticate']), /^Basic realm=/);
          assert.equal(typeof anonymous.json().error, 'string');
          const wrong = await t.app.inject({
            method: 'GET',
            url,
            headers: { authorization: `Basic ${Buffer.from(`${user.email}:nope`).toString('base64')}` },
          });
          assert.equal(wrong.statusCode, 401, url);
          const basic = await t.app.inject({
            method: 'GET',
            url,
            headers: { authorization: `Basic ${Buffer.from(`${user.email}:${user.password}`).toString('base64')}` },
          });
          assert.equal(basic.statusCode, 200, url);
          const bearer = await t.app.inject({ method: 'GET', url, headers: user.auth });
          assert.equal(bearer.statusCode, 200, url);
          const forged = await t.app.inject({ method: 'GET', url, headers: { authorization: 'Bearer not-a-token' } });
          assert.equal(forged.statusCode, 401, url);
        }
        // The wrong Basic passwords are failed sign-ins in the audit trail, naming the account.
        const admin = await t.user({ role: 'admin' });
        const trail = await t.app.inject({ url: `/api/audit?action=auth.login&resourceId=${user.id}`, headers: admin.auth });
        const refused = (trail.json().events as { outcome: string; detail: { method?: string } | null }[]).filter((e) => e.detail?.method === 'basic (API docs)');
        assert.deepEqual(refused.map((e) => e.outcome), ['denied', 'denied']);
      } finally {
        await t.close();
      }
    });
  });
}
