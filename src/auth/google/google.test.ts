// End to end: a Fastify app with the Google sign-in plugin, the real openid-client, and a
// real OpenID provider on loopback (test/oidc/provider.ts), driven through the whole
// redirect dance by a small cookie-carrying "browser". Only the user database is a fake.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';

import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { decodeJwt, SignJWT } from 'jose';
import { pino } from 'pino';

import { loggerOptions } from '../../platform/logging.js';

import { newAccount, OidcBrowser, redirectResult, signInAssertions, type SignInResult } from '../../../test/oidc/browser.js';
import { useTestIdentityProvider, type TestIdentityProvider } from '../../../test/oidc/provider.js';
import { GOOGLE_NOT_CONFIGURED, googleAuthPlugin, type GoogleConfig, type GoogleUser, type GoogleUserStore } from './plugin.js';

const APP_ORIGIN = 'http://imagemedix.test';
const CALLBACK_URL = `${APP_ORIGIN}/api/auth/google/callback`;
const CLIENT_URL = 'http://web.imagemedix.test/sign-in';
const CLIENT_ID = 'imagemedix-test';
const CLIENT_SECRET = randomBytes(24).toString('base64url');
const TOKEN_KEY = randomBytes(32);
const { assertSignedIn, assertSignInError } = signInAssertions(CLIENT_URL);

const identityProvider = useTestIdentityProvider({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUri: CALLBACK_URL });

describe('Google sign-in', () => {
  test('both routes answer 404 when no client id is configured', async () => {
    const { app } = await buildApp({ clientId: undefined, clientSecret: undefined, callbackUrl: undefined });
    for (const url of ['/api/auth/google', '/api/auth/google/callback?code=x&state=y']) {
      const res = await app.inject({ method: 'GET', url });
      assert.equal(res.statusCode, 404);
      assert.deepEqual(res.json(), { error: GOOGLE_NOT_CONFIGURED });
    }
  });

  test('the provider redirect carries PKCE, state and nonce, and the flow cookie is httpOnly and scoped', async () => {
    const { app } = await buildApp();
    const res = await app.inject({ method: 'GET', url: '/api/auth/google' });
    assert.equal(res.statusCode, 302);
    const location = new URL(String(res.headers.location));
    assert.equal(location.origin, identityProvider().issuer);
    const params = location.searchParams;
    assert.equal(params.get('client_id'), CLIENT_ID);
    assert.equal(params.get('redirect_uri'), CALLBACK_URL);
    assert.equal(params.get('response_type'), 'code');
    assert.equal(params.get('scope'), 'openid email profile');
    assert.equal(params.get('code_challenge_method'), 'S256');
    assert.match(params.get('code_challenge') ?? '', /^[\w-]{43}$/);
    assert.ok((params.get('state') ?? '').length >= 32);
    assert.ok((params.get('nonce') ?? '').length >= 32);
    const cookie = String(res.headers['set-cookie']);
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Lax/);
    assert.match(cookie, /Path=\/api\/auth\/google\/callback/);
    assert.match(cookie, /Max-Age=600/);
    // The verifier and nonce are encrypted, not merely signed.
    assert.ok(!cookie.includes(params.get('state') ?? '-'));
  });

  test('first sign-in creates an inactive doctor that an administrator must activate (default)', async () => {
    const account = newAccount();
    const { app, users, logs } = await buildApp();
    const result = await new Browser(app).signInAs(account);
    assertSignInError(result, 'account_pending_activation');
    assert.equal(users.all.length, 1);
    const created = users.all[0];
    assert.deepEqual(
      { email: created?.email, name: created?.name, role: created?.role, isActive: created?.isActive, googleSubject: created?.googleSubject },
      { email: account.email.toLowerCase(), name: account.name, role: 'doctor', isActive: false, googleSubject: account.sub },
    );
    // Signing in again before activation is still refused, and creates nobody else.
    assertSignInError(await new Browser(app).signInAs(account), 'account_inactive');
    assert.equal(users.all.length, 1);
    assertLogsClean(logs, result, [account.email]);
  });

  test('first sign-in with GOOGLE_AUTO_PROVISION=active signs the new doctor in, token in the fragment only', async () => {
    const account = newAccount();
    const { app, users, logs, issued } = await buildApp({ autoProvision: 'active' });
    const result = await new Browser(app).signInAs(account);
    const token = assertSignedIn(result);
    const created = users.all[0];
    assert.ok(created?.isActive);
    assert.equal(created.role, 'doctor');
    assert.equal(decodeJwt(token).sub, created.id);
    assert.deepEqual(issued, [token]);
    // The token never appears in a query string, on any hop.
    for (const hop of result.hops) assert.ok(!new URL(hop).search.includes(token), `token in the query of ${hop}`);
    assert.equal(result.final.search, '');
    assertLogsClean(logs, result, [account.email, token]);
  });

  test('a returning user is found by Google subject, even after changing their email', async () => {
    const account = newAccount();
    const { app, users, logs } = await buildApp({ autoProvision: 'off' });
    const existing = users.add({ email: 'old-address@example.org', googleSubject: account.sub });
    const result = await new Browser(app).signInAs(account);
    assert.equal(decodeJwt(assertSignedIn(result)).sub, existing.id);
    assert.deepEqual(users.links, []);
    assert.equal(users.all.length, 1);
    assertLogsClean(logs, result, [account.email]);
  });

  test('an existing user is linked by verified email, then found by subject next time', async () => {
    const account = newAccount({ email: `Dr.${randomUUID().slice(0, 8)}@Hospital.Example` });
    const { app, users, logs } = await buildApp({ autoProvision: 'off' });
    const existing = users.add({ email: account.email.toLowerCase(), role: 'admin' });
    const first = await new Browser(app).signInAs(account);
    assert.equal(decodeJwt(assertSignedIn(first)).sub, existing.id);
    assert.deepEqual(users.links, [{ userId: existing.id, sub: account.sub }]);
    const second = await new Browser(app).signInAs(account);
    assert.equal(decodeJwt(assertSignedIn(second)).sub, existing.id);
    assert.equal(users.links.length, 1);
    assertLogsClean(logs, first, [account.email]);
  });

  test('an unverified email is refused and never linked to the account with that email', async () => {
    const account = newAccount({ emailVerified: false });
    const { app, users, logs } = await buildApp({ autoProvision: 'active' });
    users.add({ email: account.email.toLowerCase() });
    const result = await new Browser(app).signInAs(account);
    assertSignInError(result, 'email_not_verified');
    assert.deepEqual(users.links, []);
    assert.equal(users.all.length, 1);
    assertLogsClean(logs, result, [account.email]);
  });

  test('an email already linked to another Google account is not relinked', async () => {
    const account = newAccount();
    const { app, users } = await buildApp();
    users.add({ email: account.email.toLowerCase(), googleSubject: randomUUID() });
    assertSignInError(await new Browser(app).signInAs(account), 'account_conflict');
    assert.deepEqual(users.links, []);
  });

  test('GOOGLE_ALLOWED_DOMAINS refuses other domains and other hosted domains', async () => {
    const { app, users, logs } = await buildApp({ autoProvision: 'active', allowedDomains: ['hospital.example'] });

    const start = await app.inject({ method: 'GET', url: '/api/auth/google' });
    assert.equal(new URL(String(start.headers.location)).searchParams.get('hd'), 'hospital.example');

    const outsider = newAccount({ email: `someone-${randomUUID()}@gmail.com` });
    const refused = await new Browser(app).signInAs(outsider);
    assertSignInError(refused, 'domain_not_allowed');
    const wrongHostedDomain = newAccount({ email: `a-${randomUUID()}@hospital.example`, hd: 'elsewhere.example' });
    assertSignInError(await new Browser(app).signInAs(wrongHostedDomain), 'domain_not_allowed');
    assert.equal(users.all.length, 0);

    const member = newAccount({ email: `b-${randomUUID()}@Hospital.Example`, hd: 'hospital.example' });
    assertSignedIn(await new Browser(app).signInAs(member));
    assert.equal(users.all.length, 1);
    assertLogsClean(logs, refused, [outsider.email, member.email]);
  });

  test('GOOGLE_AUTO_PROVISION=off refuses unknown Google users', async () => {
    const { app, users } = await buildApp({ autoProvision: 'off' });
    assertSignInError(await new Browser(app).signInAs(newAccount()), 'account_not_found');
    assert.equal(users.all.length, 0);
  });

  test('a deactivated user cannot sign in, whether found by subject or by email', async () => {
    const { app, users, issued } = await buildApp({ autoProvision: 'active' });
    const bySubject = newAccount();
    users.add({ email: bySubject.email.toLowerCase(), googleSubject: bySubject.sub, isActive: false });
    assertSignInError(await new Browser(app).signInAs(bySubject), 'account_inactive');
    const byEmail = newAccount();
    users.add({ email: byEmail.email.toLowerCase(), isActive: false });
    assertSignInError(await new Browser(app).signInAs(byEmail), 'account_inactive');
    assert.deepEqual(users.links, []);
    assert.deepEqual(issued, []);
  });

  test('a tampered state is refused and nobody is signed in', async () => {
    const account = newAccount();
    const { app, users, logs } = await buildApp({ autoProvision: 'active' });
    const browser = new Browser(app);
    const result = await browser.signInAs(account, {
      beforeCallback: (callback) => {
        callback.searchParams.set('state', `${callback.searchParams.get('state')}x`);
      },
    });
    assertSignInError(result, 'invalid_state');
    assert.equal(users.all.length, 0);
    assertLogsClean(logs, result, [account.email]);
  });

  test('a callback without the sign-in cookie (another browser) is refused', async () => {
    const account = newAccount();
    const { app, users } = await buildApp({ autoProvision: 'active' });
    const result = await new Browser(app).signInAs(account, { stopAtCallback: true });
    assert.ok(result.callbackUrl);
    const hijacked = await new Browser(app).follow(result.callbackUrl);
    assertSignInError(hijacked, 'invalid_state');
    assert.equal(users.all.length, 0);
  });

  test('denied consent comes back as access_denied', async () => {
    const { app, users, logs } = await buildApp({ autoProvision: 'active' });
    const result = await new Browser(app).signInAs({ deny: true });
    assertSignInError(result, 'access_denied');
    assert.equal(users.all.length, 0);
    assertLogsClean(logs, result, []);
  });

  test('a replayed authorization code is rejected by the provider and reported', async () => {
    const account = newAccount();
    const { app, issued, logs } = await buildApp({ autoProvision: 'active' });
    const browser = new Browser(app);
    const sent: Array<{ url: string; cookie: string }> = [];
    browser.onAppRequest = (url, cookie) => sent.push({ url, cookie });
    const result = await browser.signInAs(account);
    assertSignedIn(result);
    const callback = sent.find((request) => request.url.startsWith('/api/auth/google/callback'));
    assert.ok(callback);
    assert.match(callback.cookie, /imagemedix_google_signin=/);

    // An attacker who captured both the callback URL and the cookie replays them.
    const replay = await app.inject({ method: 'GET', url: callback.url, headers: { cookie: callback.cookie } });
    assertSignInError(redirectResult(replay.headers.location), 'invalid_grant');
    // The same browser replaying the URL no longer has the cookie: it was spent.
    assertSignInError(await browser.follow(`${APP_ORIGIN}${callback.url}`), 'invalid_state');
    assert.equal(issued.length, 1);
    assertLogsClean(logs, result, [account.email, ...issued]);
  });

  test('an ID token issued for another audience is refused', async () => {
    const result = await signInWithTamperedIdToken({ claims: (claims) => ({ ...claims, aud: 'some-other-client' }) });
    assertSignInError(result.result, 'invalid_response');
    assert.match(result.logs.join(''), /audience/);
  });

  test('an expired ID token is refused', async () => {
    const now = Math.floor(Date.now() / 1000);
    const result = await signInWithTamperedIdToken({ claims: (claims) => ({ ...claims, iat: now - 7200, exp: now - 3600 }) });
    assertSignInError(result.result, 'invalid_response');
    assert.match(result.logs.join(''), /expiration/);
  });

  test('an ID token from another issuer is refused', async () => {
    const result = await signInWithTamperedIdToken({ claims: (claims) => ({ ...claims, iss: 'https://accounts.google.com' }) });
    assertSignInError(result.result, 'invalid_response');
  });

  test('an ID token not signed by the provider is refused', async () => {
    const result = await signInWithTamperedIdToken({ signWithUnpublishedKey: true });
    assertSignInError(result.result, 'invalid_response');
    assert.match(result.logs.join(''), /signature/);
  });

  test('the tampering itself is harmless when the token is valid (control)', async () => {
    const result = await signInWithTamperedIdToken({ claims: (claims) => claims });
    assertSignedIn(result.result);
  });

  test('a wrong client secret is reported as a provider error', async () => {
    const { app } = await buildApp({ autoProvision: 'active', clientSecret: 'not-the-secret' });
    assertSignInError(await new Browser(app).signInAs(newAccount()), 'provider_error');
  });

  test('a failing user store sends the user back with server_error and logs no email', async () => {
    const account = newAccount();
    const { app, users, logs } = await buildApp({ autoProvision: 'active' });
    users.createFromGoogle = async (input) => {
      throw new Error(`Failed query: insert into "users" ... params: ${input.email}`, { cause: Object.assign(new Error('duplicate key'), { code: '23505' }) });
    };
    const result = await new Browser(app).signInAs(account);
    assertSignInError(result, 'server_error');
    assert.match(logs.join(""), /"cause":\{"type":"Error","code":"23505"/);
    assertLogsClean(logs, result, [account.email]);
  });

  test('an unreachable issuer sends the user back with provider_unavailable, and is retried later', async () => {
    const port = await unusedPort();
    const { app, logs } = await buildApp({ issuer: `http://127.0.0.1:${port}` });
    for (let attempt = 0; attempt < 2; attempt += 1) {
      const res = await app.inject({ method: 'GET', url: '/api/auth/google' });
      assert.equal(res.statusCode, 302);
      assertSignInError(redirectResult(res.headers.location), 'provider_unavailable');
    }
    assert.equal(logs.filter((line) => line.includes('discovery failed')).length, 2);
  });

  test('the callback query, with its code, is kept out of the request log', async () => {
    const account = newAccount();
    const { app, logs } = await buildApp({ autoProvision: 'active' });
    const result = await new Browser(app).signInAs(account);
    assertSignedIn(result);
    const incoming = logs.filter((line) => line.includes('incoming request') && line.includes('/callback'));
    assert.equal(incoming.length, 1);
    assert.match(incoming[0] ?? '', /\/api\/auth\/google\/callback\?\[redacted\]/);
    assertLogsClean(logs, result, [account.email]);
  });
});

// ---------------------------------------------------------------------------------------------

async function signInWithTamperedIdToken(
  tampering: Parameters<TestIdentityProvider['tamperIdTokens']>[0],
): Promise<{ result: SignInResult; logs: string[] }> {
  const account = newAccount();
  const { app, users, logs, issued } = await buildApp({ autoProvision: 'active' });
  identityProvider().tamperIdTokens(tampering);
  try {
    const result = await new Browser(app).signInAs(account);
    if (result.fragment.has('error')) {
      assert.equal(users.all.length, 0);
      assert.deepEqual(issued, []);
    }
    assertLogsClean(logs, result, [account.email, ...issued]);
    return { result, logs };
  } finally {
    identityProvider().tamperIdTokens(undefined);
  }
}

interface StoredUser extends GoogleUser {
  googleSubject: string | null;
}

class InMemoryUserStore implements GoogleUserStore {
  readonly all: StoredUser[] = [];
  readonly links: Array<{ userId: string; sub: string }> = [];

  add(fields: Partial<StoredUser> & { email: string }): StoredUser {
    const user: StoredUser = { id: randomUUID(), name: 'Existing User', role: 'doctor', isActive: true, googleSubject: null, ...fields };
    this.all.push(user);
    return user;
  }

  async findByGoogleSubject(sub: string): Promise<GoogleUser | null> {
    return this.copy(this.all.find((user) => user.googleSubject === sub));
  }

  async findByEmail(emailLowercase: string): Promise<GoogleUser | null> {
    return this.copy(this.all.find((user) => user.email === emailLowercase));
  }

  async linkGoogleSubject(userId: string, sub: string): Promise<void> {
    const user = this.all.find((candidate) => candidate.id === userId);
    if (!user || user.googleSubject !== null) throw new Error('cannot link');
    user.googleSubject = sub;
    this.links.push({ userId, sub });
  }

  async createFromGoogle(input: { email: string; name: string; sub: string; isActive: boolean }): Promise<GoogleUser> {
    const user = this.add({ email: input.email, name: input.name, googleSubject: input.sub, isActive: input.isActive, role: 'doctor' });
    return { ...user };
  }

  private copy(user: StoredUser | undefined): GoogleUser | null {
    return user ? { ...user } : null;
  }
}

async function buildApp(overrides: Partial<GoogleConfig> = {}): Promise<{
  app: FastifyInstance;
  users: InMemoryUserStore;
  logs: string[];
  issued: string[];
}> {
  const logs: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(chunk.toString());
      callback();
    },
  });
  // The server's own logger options (platform/logging.ts): what production writes is what is checked.
  const logger: FastifyBaseLogger = pino(loggerOptions('debug'), stream);
  const app = Fastify({ loggerInstance: logger });
  const users = new InMemoryUserStore();
  const issued: string[] = [];
  const config: GoogleConfig = {
    clientId: CLIENT_ID,
    clientSecret: CLIENT_SECRET,
    callbackUrl: CALLBACK_URL,
    clientUrl: CLIENT_URL,
    issuer: identityProvider().issuer,
    autoProvision: 'inactive',
    allowedDomains: [],
    allowInsecureIssuer: true,
    ...overrides,
  };
  await app.register(
    googleAuthPlugin({
      config,
      users,
      stateSecret: randomBytes(32),
      issueToken: async (user) => {
        const token = await new SignJWT({ role: user.role })
          .setProtectedHeader({ alg: 'HS256' })
          .setSubject(user.id)
          .setExpirationTime('15m')
          .sign(TOKEN_KEY);
        issued.push(token);
        return token;
      },
    }),
    { prefix: '/api/auth/google' },
  );
  await app.ready();
  return { app, users, logs, issued };
}

/** No token (JWT), authorization code, state or email in anything logged. */
function assertLogsClean(logs: string[], result: SignInResult, secrets: string[]): void {
  const text = logs.join('');
  assert.ok(logs.length > 0, 'nothing was logged');
  assert.ok(!text.includes('eyJ'), 'a JWT was logged');
  const callback = result.callbackUrl === undefined ? undefined : new URL(result.callbackUrl);
  const fromCallback = ['code', 'state'].map((name) => callback?.searchParams.get(name) ?? undefined);
  for (const secret of [...secrets, ...fromCallback]) {
    if (secret === undefined || secret === '') continue;
    assert.ok(!text.toLowerCase().includes(secret.toLowerCase()), `logged: ${secret.slice(0, 12)}...`);
  }
  assert.ok(!/@example\.org|@hospital\.example|@gmail\.com/i.test(text), 'an email was logged');
}

function unusedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** The shared browser (test/oidc/browser.ts), pointed at this file's provider and app URLs. */
class Browser extends OidcBrowser {
  constructor(app: FastifyInstance) {
    super(app, { idp: identityProvider(), appOrigin: APP_ORIGIN, callbackUrl: CALLBACK_URL, clientUrl: CLIENT_URL });
  }
}
