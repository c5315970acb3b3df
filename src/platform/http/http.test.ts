/**
 * What every client sees whatever route it calls: the one error shape `{"error": "..."}` (framework
 * errors included) and CORS for the configured browser origins only.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { InjectOptions } from 'fastify';
import { createTestApp, type TestApp, type TestUser } from '../../../test/helpers/app.js';
import { loadConfig } from '../config.js';

describe('error shape', () => {
  let t: TestApp;
  let doctor: TestUser;
  before(async () => {
    t = await createTestApp('pglite');
    doctor = await t.user();
  });
  after(() => t.close());

  /** Asserts the status and that the body is exactly `{"error": "<a sentence>"}`. */
  async function expectError(req: InjectOptions, status: number, message: RegExp) {
    const res = await t.app.inject(req);
    assert.equal(res.statusCode, status, `${req.method} ${JSON.stringify(req.url)}: ${res.body}`);
    assert.match(String(res.headers['content-type']), /^application\/json/);
    const body = res.json();
    assert.deepEqual(Object.keys(body), ['error'], res.body);
    assert.match(body.error, message);
  }

  test('an over-long id in the path gets 414 with the error shape, not the framework code', async () => {
    await expectError({ method: 'GET', url: `/api/scans/${'a'.repeat(200)}`, headers: doctor.auth }, 414, /too long/);
    await expectError({ method: 'GET', url: `/api/patients/${'b'.repeat(120)}`, headers: doctor.auth }, 414, /too long/);
  });

  test('a badly percent-encoded path gets 400', async () => {
    await expectError({ method: 'GET', url: '/api/scans/%E0%A4%A', headers: doctor.auth }, 400, /percent-encoded/);
  });

  test('an unknown route gets 404 naming it', async () => {
    await expectError({ method: 'GET', url: '/api/nothing-here?x=1' }, 404, /^Route GET \/api\/nothing-here not found$/);
  });

  test('bad JSON, a prototype key, a wrong Content-Type, an empty or an oversized body each get a message to act on', async () => {
    const json = { 'content-type': 'application/json' };
    await expectError({ method: 'POST', url: '/api/auth/login', headers: json, payload: '{"email":' }, 400, /not valid JSON/);
    await expectError({ method: 'POST', url: '/api/auth/login', headers: json, payload: '' }, 400, /empty/);
    await expectError({ method: 'POST', url: '/api/auth/login', payload: '' }, 400, /empty/);
    await expectError(
      { method: 'POST', url: '/api/auth/login', headers: { 'content-type': 'text/plain' }, payload: 'hello' },
      400,
      /must be a JSON object/,
    );
    await expectError(
      { method: 'POST', url: '/api/auth/login', headers: { 'content-type': 'application/xml' }, payload: '<a/>' },
      415,
      /Unsupported Content-Type/,
    );
    await expectError(
      { method: 'POST', url: '/api/auth/login', headers: json, payload: JSON.stringify({ email: 'x'.repeat(2 * 1024 * 1024) }) },
      413,
      /too large/,
    );
    // Valid JSON all the same: the message says what the server refuses in it.
    const prototypeKey = /^The request body has a "__proto__" key, or a "constructor" key holding "prototype", which the server refuses: rename or remove it$/;
    await expectError({ method: 'POST', url: '/api/auth/login', headers: json, payload: '{"__proto__":{"x":1}}' }, 400, prototypeKey);
    await expectError(
      { method: 'POST', url: '/api/patients', headers: { ...doctor.auth, ...json }, payload: '{"patientId":"P-1","name":"A","contact":{"constructor":{"prototype":{}}}}' },
      400,
      prototypeKey,
    );
  });

  test('a client that sends Content-Type: application/json on every call may call the routes without a body', async () => {
    const admin = await t.user({ role: 'admin' });
    const patient = await t.patient(doctor);
    const json = { 'content-type': 'application/json' };
    const deleted = await t.app.inject({ method: 'DELETE', url: `/api/patients/${patient._id}`, headers: { ...admin.auth, ...json }, payload: '' });
    assert.equal(deleted.statusCode, 200, deleted.body);
    assert.match(deleted.json().message, /deleted/);
    const gone = await t.app.inject({ method: 'GET', url: `/api/patients/${patient._id}`, headers: admin.auth });
    assert.equal(gone.statusCode, 404);
    // The empty body is still no JSON object where one is needed, and nothing is written.
    await expectError({ method: 'POST', url: '/api/patients', headers: { ...doctor.auth, ...json }, payload: '' }, 400, /^The request body is empty: send a JSON object$/);
  });

  test('validation errors name the field, the allowed values and what was sent', async () => {
    const patient = await t.patient(doctor);
    await expectError(
      { method: 'PATCH', url: `/api/patients/${patient._id}`, headers: doctor.auth, payload: { status: 'deceased' } },
      400,
      /^body field "status" must be one of "active", "inactive", "archived"; got "deceased"$/,
    );
    await expectError(
      { method: 'GET', url: '/api/scans?limit=1000', headers: doctor.auth },
      400,
      /^querystring field "limit" must be <= 100; got 1000$/,
    );
  });

  // Found by an exploratory client: these answered with the regular expression itself, or "must be string".
  test('a malformed date, identifier or repeated filter is described in words, not as a regular expression', async () => {
    await expectError(
      { method: 'GET', url: '/api/scans?startDate=yesterday', headers: doctor.auth },
      400,
      /^querystring field "startDate" must be a date \(YYYY-MM-DD\) or an ISO 8601 date-time, e\.g\. 2025-05-01T15:30:00Z; got "yesterday"$/,
    );
    // An offset's "+" sent unencoded arrives as a space: say so.
    await expectError(
      { method: 'GET', url: '/api/scans?endDate=2025-01-01T00:00:00+05:30', headers: doctor.auth },
      400,
      /^querystring field "endDate" must be a date .*; got "2025-01-01T00:00:00 05:30": a "\+" in a URL must be sent as %2B$/,
    );
    const encoded = await t.app.inject({ url: '/api/scans?endDate=2025-01-01T00:00:00%2B05:30', headers: doctor.auth });
    assert.equal(encoded.statusCode, 200, encoded.body);
    await expectError(
      { method: 'POST', url: '/api/patients', headers: doctor.auth, payload: { patientId: '#42', name: 'Raj Sharma' } },
      400,
      /^body field "patientId" must be 1-64 letters, digits or \. _ - \/ starting with a letter or digit, e\.g\. PT-20250505-001; got "#42"$/,
    );
    const patient = await t.patient(doctor);
    await expectError(
      { method: 'POST', url: `/api/patients/${patient._id}/notes`, headers: doctor.auth, payload: { content: '' } },
      400,
      /^body field "content" must not be empty$/,
    );
    await expectError(
      { method: 'POST', url: `/api/patients/${patient._id}/notes`, headers: doctor.auth, payload: { content: 'x'.repeat(20_001) } },
      400,
      /^body field "content" must be at most \d+ characters; got 20001$/,
    );
    await expectError(
      { method: 'GET', url: '/api/scans?status=completed&status=failed', headers: doctor.auth },
      400,
      /^querystring field "status" was given more than once: give one value$/,
    );
  });

  test('a rejected password is never echoed back', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: doctor.email, password: 42 } });
    assert.equal(res.statusCode, 400);
    assert.doesNotMatch(res.json().error, /42/);
  });
});

describe('CORS', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp('pglite', {
      env: { CLIENT_URL: 'https://viewer.hospital.test/app', CORS_ORIGINS: 'https://viewer.hospital.test, http://localhost:5173' },
    });
  });
  after(() => t.close());

  const preflight = (origin: string) =>
    t.app.inject({
      method: 'OPTIONS',
      url: '/api/scans',
      headers: { origin, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
    });

  test('a configured origin may call the API with a bearer token, and read the rate-limit headers', async () => {
    const pre = await preflight('https://viewer.hospital.test');
    assert.equal(pre.statusCode, 204);
    assert.equal(pre.headers['access-control-allow-origin'], 'https://viewer.hospital.test');
    assert.equal(pre.headers['access-control-allow-credentials'], 'true');
    assert.match(String(pre.headers['access-control-allow-headers']), /Authorization/i);
    assert.match(String(pre.headers['access-control-allow-methods']), /PATCH/);

    const user = await t.user();
    const res = await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { ...user.auth, origin: 'http://localhost:5173' } });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['access-control-allow-origin'], 'http://localhost:5173');
    assert.match(String(res.headers['access-control-expose-headers']), /X-RateLimit-Remaining/);
    // A refusal is readable by the browser app too.
    const denied = await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { origin: 'http://localhost:5173' } });
    assert.equal(denied.statusCode, 401);
    assert.equal(denied.headers['access-control-allow-origin'], 'http://localhost:5173');
  });

  test('any other origin gets no CORS headers, never a wildcard', async () => {
    const pre = await preflight('https://evil.example');
    assert.equal(pre.headers['access-control-allow-origin'], undefined);
    const res = await t.app.inject({ method: 'GET', url: '/healthz', headers: { origin: 'https://evil.example' } });
    assert.equal(res.headers['access-control-allow-origin'], undefined);
  });

  test('CORS_ORIGINS defaults to the origin of CLIENT_URL and refuses "*" or a path', () => {
    const base = { DATA_DIR: t.dataDir, JWT_SECRET: 'x'.repeat(40) };
    assert.deepEqual(loadConfig({ ...base, CLIENT_URL: 'https://viewer.hospital.test/app/' }).corsOrigins, [
      'https://viewer.hospital.test',
    ]);
    const defaults = loadConfig(base);
    assert.deepEqual(defaults.corsOrigins, [new URL(defaults.google.clientUrl).origin]);
    assert.throws(() => loadConfig({ ...base, CORS_ORIGINS: '*' }), /"\*" is not allowed/);
    assert.throws(() => loadConfig({ ...base, CORS_ORIGINS: 'https://a.test/path' }), /no path/);
  });
});
