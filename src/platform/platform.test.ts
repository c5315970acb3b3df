import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestApp, type TestApp } from '../../test/helpers/app.js';
import { ConfigError, loadConfig } from './config.js';
import { createUrlSigner } from './signing.js';

// Every data directory of this file under one, removed when its tests are done.
const tmpRoot = mkdtempSync(path.join(tmpdir(), 'imagemedix-cfg-'));
const tmp = () => mkdtempSync(path.join(tmpRoot, 'data-'));
after(() => rmSync(tmpRoot, { recursive: true, force: true }));

describe('configuration', () => {
  test('defaults', () => {
    const c = loadConfig({ DATA_DIR: tmp() });
    assert.equal(c.port, 3000);
    assert.equal(c.databaseUrl, null);
    assert.deepEqual(c.rateLimit, { max: 100, userMax: 1000, windowMs: 900_000 });
    // A signed-in user's allowance is never below an address's.
    assert.equal(loadConfig({ DATA_DIR: tmp(), RATE_LIMIT_MAX: '5000' }).rateLimit.userMax, 5000);
    assert.equal(c.maxUploadMb, 50);
    assert.equal(c.worker.inProcess, true);
  });

  test('bad values stop start-up with a message naming the variable', () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ PORT: 'eighty' }, /PORT must be a whole number/],
      [{ PORT: '70000' }, /PORT must be between/],
      [{ DATABASE_URL: 'mysql://x' }, /DATABASE_URL must use postgres/],
      [{ JWT_SECRET: 'short' }, /JWT_SECRET must be at least 32/],
      [{ JWT_EXPIRES_IN: 'forever' }, /JWT_EXPIRES_IN/],
      [{ RATE_LIMIT_MAX: '-1' }, /RATE_LIMIT_MAX/],
      [{ RATE_LIMIT_MAX: '200', RATE_LIMIT_USER_MAX: '150' }, /RATE_LIMIT_USER_MAX must be at least RATE_LIMIT_MAX \(200\)/],
      [{ ADMIN_EMAIL: 'a@b.co' }, /ADMIN_EMAIL and ADMIN_PASSWORD must be set together/],
      [{ WEBHOOK_ALLOW_PRIVATE: 'maybe' }, /WEBHOOK_ALLOW_PRIVATE must be true or false/],
      [{ GOOGLE_AUTO_PROVISION: 'sometimes' }, /GOOGLE_AUTO_PROVISION must be one of/],
    ];
    for (const [env, message] of cases) {
      assert.throws(() => loadConfig({ DATA_DIR: tmp(), ...env }), (err: Error) => err instanceof ConfigError && message.test(err.message));
    }
  });

  test('without JWT_SECRET a random secret is generated once, kept private, and reused', () => {
    const dir = tmp();
    const a = loadConfig({ DATA_DIR: dir });
    const b = loadConfig({ DATA_DIR: dir });
    assert.deepEqual(a.jwtSecret, b.jwtSecret);
    assert.ok(a.jwtSecret.length >= 32);
    assert.equal(statSync(path.join(dir, 'jwt-secret')).mode & 0o777, 0o600);
    const other = loadConfig({ DATA_DIR: tmp() });
    assert.notDeepEqual(other.jwtSecret, a.jwtSecret);
    assert.ok(readFileSync(path.join(dir, 'jwt-secret'), 'utf8').length > 40);
  });
});

describe('signed links', () => {
  test('verify accepts its own signature and refuses tampering, another user and expiry', () => {
    let now = 1_000_000_000_000;
    const signer = createUrlSigner(randomBytes(32), 60, () => now);
    const userId = '11111111-1111-4111-8111-111111111111';
    const url = new URL(signer.sign('/files/scans/a/image.png', 'http://h', { userId }));
    const q = { expires: url.searchParams.get('expires')!, user: url.searchParams.get('user')!, signature: url.searchParams.get('signature')! };
    assert.equal(q.user, userId);
    assert.deepEqual(signer.verify('/files/scans/a/image.png', q), { ok: true, userId });
    const invalid = { ok: false, reason: 'invalid' };
    assert.deepEqual(signer.verify('/files/scans/b/image.png', q), invalid);
    assert.deepEqual(signer.verify('/files/scans/a/image.png', { ...q, expires: String(Number(q.expires) + 1) }), invalid);
    assert.deepEqual(signer.verify('/files/scans/a/image.png', { ...q, user: '22222222-2222-4222-8222-222222222222' }), invalid);
    assert.deepEqual(signer.verify('/files/scans/a/image.png', { ...q, signature: undefined }), invalid);
    now += 61_000;
    assert.deepEqual(signer.verify('/files/scans/a/image.png', q), { ok: false, reason: 'expired' });
  });

  test('a link is the same for a step of its lifetime and never outlives it', () => {
    let now = 1_000_000_003_500;
    const signer = createUrlSigner(randomBytes(32), 3600, () => now);
    const userId = '11111111-1111-4111-8111-111111111111';
    const sign = (p: string) => new URL(signer.sign(p, null, { userId }), 'http://h');
    const first = sign('/files/scans/a/image.png');
    const expires = Number(first.searchParams.get('expires'));
    assert.ok(expires <= now / 1000 + 3600 && expires > now / 1000 + 3600 - 60, `expires ${expires}`);
    now += 10_000;
    assert.equal(sign('/files/scans/a/image.png').href, first.href, 'the same link within the step');
    assert.notEqual(sign('/files/scans/b/image.png').searchParams.get('signature'), first.searchParams.get('signature'));
    now += 60_000;
    const later = sign('/files/scans/a/image.png');
    assert.ok(Number(later.searchParams.get('expires')) > expires, 'a later step, a later expiry');
    assert.deepEqual(signer.verify('/files/scans/a/image.png', Object.fromEntries(later.searchParams)), { ok: true, userId });
    now = (expires + 1) * 1000;
    assert.deepEqual(signer.verify('/files/scans/a/image.png', Object.fromEntries(first.searchParams)), { ok: false, reason: 'expired' });
  });
});

describe('HTTP platform (pglite)', () => {
  let t: TestApp;
  before(async () => {
    t = await createTestApp('pglite', { env: { RATE_LIMIT_MAX: '5', RATE_LIMIT_USER_MAX: '8', RATE_LIMIT_WINDOW_MS: '60000' } });
  });
  after(() => t.close());

  test('health and readiness', async () => {
    assert.deepEqual((await t.app.inject({ url: '/healthz' })).json(), { status: 'ok' });
    assert.deepEqual((await t.app.inject({ url: '/readyz' })).json(), { status: 'ready', database: 'pglite' });
  });

  test('readiness while the database is out of reach: 503 with Retry-After, for the load balancer to look again', async () => {
    const ping = t.database.ping.bind(t.database);
    t.database.ping = () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:5432'));
    try {
      const res = await t.app.inject({ url: '/readyz' });
      assert.equal(res.statusCode, 503);
      assert.deepEqual(res.json(), { error: 'The database is not reachable' });
      assert.equal(res.headers['retry-after'], '30');
    } finally {
      t.database.ping = ping;
    }
  });

  test('the OpenAPI document lists every documented endpoint', async () => {
    const res = await t.app.inject({ url: '/openapi.json' });
    assert.equal(res.statusCode, 200);
    const doc = res.json();
    assert.equal(doc.openapi, '3.0.3');
    for (const [p, method] of [
      ['/api/auth/login', 'post'],
      ['/api/auth/me', 'get'],
      ['/api/auth/google/', 'get'],
      ['/api/users/users', 'get'],
      ['/api/users/users/{id}', 'patch'],
      ['/api/patients/', 'get'],
      ['/api/patients/{id}', 'patch'],
      ['/api/patients/{id}/medical-history', 'post'],
      ['/api/patients/{id}/notes', 'post'],
      ['/api/patients/{id}/assign-doctor', 'post'],
      ['/api/ml/brain/analyze', 'post'],
      ['/api/ml/status/{scanId}', 'get'],
      ['/api/webhooks/', 'post'],
    ] as const) {
      assert.ok(doc.paths[p]?.[method], `${method.toUpperCase()} ${p} missing from the OpenAPI document`);
    }
    const docs = await t.app.inject({ url: '/docs' });
    assert.ok([200, 302].includes(docs.statusCode));
  });

  test('unknown routes answer 404 in the error shape', async () => {
    const res = await t.app.inject({ url: '/api/nothing-here?x=1' });
    assert.equal(res.statusCode, 404);
    assert.deepEqual(res.json(), { error: 'Route GET /api/nothing-here not found' });
  });

  test('rate limit headers on every response, then 429 with the error shape', async () => {
    const headersOf = async () => {
      const res = await t.app.inject({ url: '/api/auth/me', remoteAddress: '10.9.9.9' });
      return res;
    };
    const first = await headersOf();
    assert.equal(first.headers['x-ratelimit-limit'], '5');
    assert.equal(first.headers['x-ratelimit-remaining'], '4');
    const reset = Number(first.headers['x-ratelimit-reset']);
    assert.ok(reset > 0 && reset <= 60, `reset ${reset} is seconds until the window resets`);
    for (let i = 0; i < 4; i++) await headersOf();
    const limited = await headersOf();
    assert.equal(limited.statusCode, 429);
    assert.match(limited.json().error, /Too many requests/);
    assert.equal(limited.headers['x-ratelimit-remaining'], '0');
    // Another address has its own budget; unknown routes count too.
    const other = await t.app.inject({ url: '/nope', remoteAddress: '10.9.9.10' });
    assert.equal(other.statusCode, 404);
    assert.equal(other.headers['x-ratelimit-remaining'], '4');
  });

  test('a signed-in user spends their own, larger budget; anonymous calls and sign-in stay per address', async () => {
    const ip = '10.7.7.7';
    const [ana, ben] = [await t.user(), await t.user()];
    const call = (headers: Record<string, string> = {}, url = '/api/auth/me', remoteAddress = ip) =>
      t.app.inject({ url, headers, remoteAddress });
    const budget = (res: { headers: Record<string, unknown> }) => [res.headers['x-ratelimit-limit'], res.headers['x-ratelimit-remaining']];

    const first = await call(ana.auth);
    assert.equal(first.statusCode, 200);
    assert.deepEqual(budget(first), ['8', '7']);
    assert.deepEqual(budget(await call(ben.auth)), ['8', '7'], 'two doctors behind one address do not share');
    assert.deepEqual(budget(await call()), ['5', '4'], "the address's own budget is untouched by signed-in calls");
    // A token that does not verify is anonymous: it spends the address's budget.
    const forged = `${ana.token.slice(0, -4)}AAAA`;
    assert.deepEqual(budget(await call({ authorization: `Bearer ${forged}` })), ['5', '3']);
    // Signing in is keyed by address even with a valid token along: passwords are guessed there.
    const login = await t.app.inject({
      method: 'POST',
      url: '/api/auth/login',
      headers: ana.auth,
      remoteAddress: ip,
      payload: { email: ana.email, password: 'wrong-password' },
    });
    assert.deepEqual(budget(login), ['5', '2']);

    for (let i = 0; i < 7; i++) assert.equal((await call(ana.auth)).statusCode, 200);
    const limited = await call(ana.auth, '/api/auth/me', '10.7.7.8');
    assert.equal(limited.statusCode, 429, 'the budget is the user\'s wherever they call from');
    assert.match(limited.json().error, /the limit is 8 per minute/);
    assert.equal((await call(ben.auth)).statusCode, 200, 'another user is not affected');
  });
});

describe('rate limit of an hour', () => {
  test('the 429 says the wait in minutes, as a person reads it, and Retry-After keeps it in seconds', async () => {
    const t = await createTestApp('pglite', { env: { RATE_LIMIT_MAX: '1', RATE_LIMIT_WINDOW_MS: '3600000' } });
    try {
      const call = () => t.app.inject({ url: '/api/auth/me', remoteAddress: '10.8.8.8' });
      await call();
      const limited = await call();
      assert.equal(limited.statusCode, 429);
      assert.match(limited.json().error, /^Too many requests: the limit is 1 per hour; try again in (59|60) minutes$/);
      const retryAfter = Number(limited.headers['retry-after']);
      assert.ok(retryAfter > 3500 && retryAfter <= 3600, `Retry-After ${retryAfter}`);
    } finally {
      await t.close();
    }
  });
});

describe('rate limits shared through Redis', () => {
  test('two API instances share one budget per IP', async (tt) => {
    const { Redis } = await import('ioredis');
    const probe = new Redis('redis://127.0.0.1:6379', { lazyConnect: true, maxRetriesPerRequest: 0 });
    try {
      await probe.connect();
    } catch {
      if (process.env.CI) throw new Error('CI requires Redis at 127.0.0.1:6379');
      tt.skip('Redis is not running on 127.0.0.1:6379');
      return;
    } finally {
      probe.disconnect();
    }
    const env = {
      RATE_LIMIT_MAX: '3',
      RATE_LIMIT_USER_MAX: '4',
      RATE_LIMIT_WINDOW_MS: '60000',
      JWT_SECRET: randomBytes(32).toString('hex'),
      REDIS_URL: 'redis://127.0.0.1:6379',
      REDIS_KEY_PREFIX: `imagemedix-test-${randomBytes(4).toString('hex')}:`,
    };
    const a = await createTestApp('pglite', { env });
    const b = await createTestApp('pglite', { env });
    try {
      const hit = (t: TestApp) => t.app.inject({ url: '/healthz-missing', remoteAddress: '10.1.2.3' });
      assert.equal((await hit(a)).headers['x-ratelimit-remaining'], '2');
      assert.equal((await hit(b)).headers['x-ratelimit-remaining'], '1');
      assert.equal((await hit(a)).headers['x-ratelimit-remaining'], '0');
      assert.equal((await hit(b)).statusCode, 429);
      // A signed-in user's budget is one across the instances too (same JWT secret, as deployed).
      const user = await a.user();
      const me = (t: TestApp) => t.app.inject({ url: '/api/auth/me', headers: user.auth, remoteAddress: '10.1.2.3' });
      assert.equal((await me(a)).headers['x-ratelimit-remaining'], '3');
      assert.equal((await me(b)).headers['x-ratelimit-remaining'], '2');
    } finally {
      await a.close();
      await b.close();
    }
  });
});
