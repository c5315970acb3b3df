/**
 * The whole set of security headers, exactly: every answer carries them whether it is the
 * API's, a file of the web app or an error, and a change to any value shows up here.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestApp, type TestApp, type TestUser } from '../../../test/helpers/app.js';

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'none';img-src 'self' data: blob:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline'",
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'origin-agent-cluster': '?1',
  'referrer-policy': 'no-referrer',
  'strict-transport-security': 'max-age=31536000; includeSubDomains',
  'x-content-type-options': 'nosniff',
  'x-dns-prefetch-control': 'off',
  'x-download-options': 'noopen',
  'x-frame-options': 'DENY',
  'x-permitted-cross-domain-policies': 'none',
  'x-xss-protection': '0',
} as const;

/** The answer's headers that are security headers: every name above, and any other it has. */
function securityHeadersOf(headers: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(headers).filter(([name]) => name in SECURITY_HEADERS || /^(x-(?!ratelimit)|cross-origin|origin-agent|referrer|strict-transport|content-security)/.test(name)),
  );
}

describe('security headers, the whole set', () => {
  let t: TestApp;
  let doctor: TestUser;
  const root = mkdtempSync(path.join(tmpdir(), 'imagemedix-headers-'));

  before(async () => {
    mkdirSync(path.join(root, 'assets'));
    writeFileSync(path.join(root, 'index.html'), '<!doctype html><title>ImageMedix</title>');
    writeFileSync(path.join(root, 'assets', 'app-abc123.js'), 'console.log(1)');
    t = await createTestApp('pglite', { build: () => ({ webRoot: root }) });
    doctor = await t.user();
  });
  after(async () => {
    await t.close();
    rmSync(root, { recursive: true, force: true });
  });

  test('an API answer, a file of the web app, a 401, a 404 and a 400 carry exactly the same set', async () => {
    const cases = [
      ['api', await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: doctor.auth }), 200],
      ['asset', await t.app.inject({ method: 'GET', url: '/assets/app-abc123.js' }), 200],
      ['401', await t.app.inject({ method: 'GET', url: '/api/scans' }), 401],
      ['404', await t.app.inject({ method: 'GET', url: '/api/nope', headers: { accept: 'application/json' } }), 404],
      ['400', await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: 1 } }), 400],
    ] as const;
    for (const [what, res, status] of cases) {
      assert.equal(res.statusCode, status, what);
      assert.deepEqual(securityHeadersOf(res.headers), SECURITY_HEADERS, what);
    }
  });

  test('the web app page keeps its own CSP and the rest of the set', async () => {
    const res = await t.app.inject({ method: 'GET', url: '/', headers: { accept: 'text/html' } });
    assert.equal(res.statusCode, 200);
    const { 'content-security-policy': csp, ...rest } = securityHeadersOf(res.headers);
    const { 'content-security-policy': _siteCsp, ...expected } = SECURITY_HEADERS;
    assert.deepEqual(rest, expected);
    assert.match(String(csp), /script-src 'self'/);
    assert.notEqual(csp, SECURITY_HEADERS['content-security-policy']);
  });
});
