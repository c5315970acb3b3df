/**
 * Serving the web app: files as built, index.html for page routes (a reload on /scans/123
 * works), and never in place of the API's own answers.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestApp, type TestApp } from '../../test/helpers/app.js';
import { WEB_APP_CSP } from './plugin.js';

describe('web app serving', () => {
  let t: TestApp;
  let bare: TestApp;
  const root = mkdtempSync(path.join(tmpdir(), 'imagemedix-web-'));
  const html = '<!doctype html><title>ImageMedix</title><div id="root"></div>';

  before(async () => {
    mkdirSync(path.join(root, 'assets'));
    writeFileSync(path.join(root, 'index.html'), html);
    writeFileSync(path.join(root, 'assets', 'app-abc123.js'), 'console.log(1)');
    writeFileSync(path.join(root, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
    t = await createTestApp('pglite', { env: { RATE_LIMIT_MAX: '3' }, build: () => ({ webRoot: root }) });
    bare = await createTestApp('pglite', { build: () => ({ webRoot: null }) });
  });
  after(async () => {
    await t.close();
    await bare.close();
    rmSync(root, { recursive: true, force: true });
  });

  const page = (app: TestApp, url: string, remoteAddress = '127.0.0.1') =>
    app.app.inject({ method: 'GET', url, remoteAddress, headers: { accept: 'text/html,application/xhtml+xml' } });

  test('the home page and every client route answer index.html with the CSP the app needs', async () => {
    for (const url of ['/', '/scans/0b7c0e54-4f7a-4a39-9d43-5d7a1b2f8a11', '/patients?search=x', '/admin/users']) {
      const res = await page(t, url);
      assert.equal(res.statusCode, 200, url);
      assert.equal(res.body, html);
      assert.match(String(res.headers['content-type']), /^text\/html/);
      assert.equal(res.headers['content-security-policy'], WEB_APP_CSP);
      assert.equal(res.headers['cache-control'], 'no-cache');
    }
  });

  test('the home page is the app for curl and other clients that do not ask for HTML; unknown paths stay JSON 404s', async () => {
    for (const accept of ['*/*', undefined, 'application/json']) {
      const res = await t.app.inject({ method: 'GET', url: '/', headers: accept ? { accept } : {} });
      assert.equal(res.statusCode, 200, `Accept: ${accept}`);
      assert.match(String(res.headers['content-type']), /^text\/html/);
      assert.equal(res.body, html);
    }
    assert.equal((await t.app.inject({ method: 'HEAD', url: '/?from=probe', headers: { accept: '*/*' } })).statusCode, 200);
    for (const url of ['/api/nope', '/unknown']) {
      const res = await t.app.inject({ method: 'GET', url, remoteAddress: '10.0.2.1', headers: { accept: '*/*' } });
      assert.equal(res.statusCode, 404, url);
      assert.match(String(res.headers['content-type']), /^application\/json/, url);
      assert.match(res.json().error, /not found/, url);
    }
  });

  test('built assets are served with a long cache, and page loads do not spend the API request budget', async () => {
    for (let i = 0; i < 6; i++) {
      const res = await t.app.inject({ method: 'GET', url: '/assets/app-abc123.js' });
      assert.equal(res.statusCode, 200);
      assert.equal(res.body, 'console.log(1)');
      assert.equal(res.headers['cache-control'], 'public, max-age=31536000, immutable');
      assert.equal((await page(t, '/')).statusCode, 200);
    }
    assert.equal((await t.app.inject({ method: 'GET', url: '/favicon.svg' })).headers['cache-control'], 'no-cache');
  });

  test('API, file, report and docs paths keep their JSON 404 even when a browser asks for HTML', async () => {
    // These are API answers and count against the request budget (3 here): one address each.
    for (const [i, url] of ['/api/nope', '/api', '/files/nope.png', '/reports/nope.pdf', '/docs/nope', '/assets/missing.js'].entries()) {
      const res = await page(t, url, `10.0.0.${i + 1}`);
      // The API's own answer (404, or 403 for an unsigned file link), never the web page.
      assert.ok([403, 404].includes(res.statusCode), `${url}: ${res.statusCode}`);
      assert.match(String(res.headers['content-type']), /^application\/json/, url);
      assert.ok(typeof res.json().error === 'string', url);
    }
    // A non-browser client asking for an unknown path gets the JSON 404 too.
    const api = await t.app.inject({ method: 'GET', url: '/unknown', remoteAddress: '10.0.1.1', headers: { accept: 'application/json' } });
    assert.equal(api.statusCode, 404);
    assert.match(api.json().error, /not found/);
    assert.equal((await t.app.inject({ method: 'POST', url: '/', remoteAddress: '10.0.1.2', headers: { accept: 'text/html' } })).statusCode, 404);
  });

  test('the sign-in page can ask whether Google sign-in is offered (off unless configured)', async () => {
    const res = await bare.app.inject({ method: 'GET', url: '/api/auth/google/enabled' });
    assert.equal(res.statusCode, 200);
    assert.deepEqual(res.json(), { enabled: false });
  });

  test('without a built web app the server still runs the API and answers 404 for pages', async () => {
    const res = await page(bare, '/');
    assert.equal(res.statusCode, 404);
    assert.match(res.json().error, /not found/);
    assert.equal((await bare.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  });
});
