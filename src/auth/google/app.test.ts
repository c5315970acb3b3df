// Google sign-in end to end through the whole application: the real app (buildApp with its
// FEATURES wiring), the users table on each database kind (store.ts), the real openid-client,
// and a real OpenID provider on loopback (test/oidc/provider.ts), driven by a cookie-carrying
// "browser". What is asserted is what a user or an administrator would notice: where the
// browser ends up, whether the token works, and what the user list shows.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import type { FastifyInstance } from 'fastify';

import { createTestApp, type TestApp, type TestUser } from '../../../test/helpers/app.js';
import { databaseKinds } from '../../../test/helpers/db.js';
import { newAccount, OidcBrowser, signInAssertions, type SignInResult } from '../../../test/oidc/browser.js';
import { useTestIdentityProvider, type TestAccount } from '../../../test/oidc/provider.js';
import { buildApp } from '../../app.js';
import { loadConfig, type Config } from '../../platform/config.js';

const APP_ORIGIN = 'http://imagemedix.test';
const CALLBACK_URL = `${APP_ORIGIN}/api/auth/google/callback`;
const CLIENT_URL = 'http://web.imagemedix.test/sign-in';
const CLIENT_ID = 'imagemedix-app-test';
const CLIENT_SECRET = randomBytes(24).toString('base64url');
const NOT_CONFIGURED = 'Google sign-in is not configured on this server';

const { assertSignedIn, assertSignInError } = signInAssertions(CLIENT_URL);

const identityProvider = useTestIdentityProvider({ clientId: CLIENT_ID, clientSecret: CLIENT_SECRET, redirectUri: CALLBACK_URL });

/** The GOOGLE_* environment of a server whose Google client is the test provider's. */
function googleEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    GOOGLE_CLIENT_ID: CLIENT_ID,
    GOOGLE_CLIENT_SECRET: CLIENT_SECRET,
    GOOGLE_CALLBACK_URL: CALLBACK_URL,
    CLIENT_URL,
    GOOGLE_ISSUER: identityProvider().issuer,
    ...extra,
  };
}

/** The test provider is plain http on loopback, which no environment variable may allow. */
const allowLoopbackIssuer = (config: Config): void => {
  config.google.allowInsecureIssuer = true;
};

interface ListedUser {
  _id: string;
  name: string;
  email: string;
  role: string;
  specialization: string | null;
  isActive: boolean;
}

/**
 * Another whole application (buildApp with its FEATURES) on the same database and runtime as
 * `t`, whose Google settings are those `env` gives: a second server of one deployment with
 * another configuration, without paying for a second test database.
 */
async function sameAppWithEnv(t: TestApp, env: Record<string, string>): Promise<FastifyInstance> {
  const { google } = loadConfig({ DATA_DIR: t.dataDir, JWT_SECRET: 'x'.repeat(32), ...env });
  const config: Config = { ...t.config, google };
  allowLoopbackIssuer(config);
  const app = await buildApp({ ...t.ctx, config }, { logger: false });
  await app.ready();
  return app;
}

/** What the browser, an administrator and the API show of one app. */
function client(app: FastifyInstance, admin: TestUser) {
  const newBrowser = () => new OidcBrowser(app, { idp: identityProvider(), appOrigin: APP_ORIGIN, callbackUrl: CALLBACK_URL, clientUrl: CLIENT_URL });
  return {
    signIn(account: TestAccount | { deny: true }, options?: Parameters<OidcBrowser['signInAs']>[1]): Promise<SignInResult> {
      // A fresh browser each time: no provider session or cookie carries over between sign-ins.
      return newBrowser().signInAs(account, options);
    },
    /**
     * Two browsers (tabs) sign in as `account`; both are stopped at the callback and then
     * follow it at the same moment, as when a user double-submits the sign-in.
     */
    async signInTwiceAtOnce(account: TestAccount): Promise<[SignInResult, SignInResult]> {
      const tabs = [newBrowser(), newBrowser()];
      const callbacks: string[] = [];
      for (const tab of tabs) {
        const { callbackUrl } = await tab.signInAs(account, { stopAtCallback: true });
        assert.ok(callbackUrl);
        callbacks.push(callbackUrl);
      }
      const [first, second] = await Promise.all(tabs.map((tab, i) => tab.follow(callbacks[i]!)));
      return [first!, second!];
    },
    async users(): Promise<ListedUser[]> {
      const res = await app.inject({ url: '/api/users/users', headers: admin.auth });
      assert.equal(res.statusCode, 200, res.body);
      return res.json();
    },
    async setActive(userId: string, isActive: boolean): Promise<void> {
      const res = await app.inject({ method: 'PATCH', url: `/api/users/users/${userId}`, headers: admin.auth, payload: { isActive } });
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(res.json().isActive, isActive);
    },
    me(token: string) {
      return app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${token}` } });
    },
  };
}

/** Signed in: the token is in the CLIENT_URL fragment, and in no query string on any hop. */
function signedIn(result: SignInResult): string {
  const token = assertSignedIn(result);
  assert.match(token, /^eyJ/);
  for (const hop of result.hops) assert.ok(!decodeURIComponent(new URL(hop).search).includes(token), `token in the query of ${hop}`);
  assert.ok(!result.final.search.includes(token));
  assert.ok(result.final.hash.includes(token));
  return token;
}

for (const kind of await databaseKinds()) {
  describe(`Google sign-in through the whole app (${kind})`, () => {
    let t: TestApp;
    let admin: TestUser;
    let app: ReturnType<typeof client>;

    before(async () => {
      t = await createTestApp(kind, { env: googleEnv(), adjustConfig: allowLoopbackIssuer });
      admin = await t.user({ role: 'admin' });
      app = client(t.app, admin);
    });
    after(() => t.close());

    test('first sign-in creates an inactive doctor; once an admin activates it, the Google token works', async () => {
      const account = newAccount({ email: `New.Doctor.${randomUUID().slice(0, 8)}@Example.org` });
      const email = account.email.toLowerCase();

      assertSignInError(await app.signIn(account), 'account_pending_activation');
      const pending = (await app.users()).filter((u) => u.email === email);
      assert.equal(pending.length, 1);
      const created = pending[0]!;
      assert.deepEqual(
        { name: created.name, role: created.role, isActive: created.isActive, specialization: created.specialization },
        { name: account.name, role: 'doctor', isActive: false, specialization: null },
      );

      // Still waiting for the admin: refused again, and nobody else is created.
      assertSignInError(await app.signIn(account), 'account_inactive');
      assert.equal((await app.users()).filter((u) => u.email === email).length, 1);

      await app.setActive(created._id, true);
      const token = signedIn(await app.signIn(account));
      const me = await app.me(token);
      assert.equal(me.statusCode, 200, me.body);
      assert.deepEqual(me.json(), { _id: created._id, name: account.name, email, role: 'doctor', specialization: null });
    });

    test('a returning user is found by Google subject even after their email changes at Google', async () => {
      const account = newAccount();
      assertSignInError(await app.signIn(account), 'account_pending_activation');
      const user = (await app.users()).find((u) => u.email === account.email.toLowerCase());
      assert.ok(user);
      await app.setActive(user._id, true);
      assert.equal((await app.me(signedIn(await app.signIn(account)))).json()._id, user._id);

      const before = (await app.users()).length;
      const renamed: TestAccount = { ...account, email: `renamed.${randomUUID().slice(0, 8)}@Example.org` };
      const me = await app.me(signedIn(await app.signIn(renamed)));
      assert.equal(me.statusCode, 200, me.body);
      assert.equal(me.json()._id, user._id);
      const after = await app.users();
      assert.equal(after.length, before, 'a second account was created');
      assert.ok(!after.some((u) => u.email === renamed.email.toLowerCase()));
    });

    test('an existing password user is linked by verified email, and their password still works', async () => {
      const u = await t.user({ specialization: 'Radiology' });
      const before = (await app.users()).length;
      const account = newAccount({ email: u.email.toUpperCase() });

      const me = await app.me(signedIn(await app.signIn(account)));
      assert.equal(me.statusCode, 200, me.body);
      assert.deepEqual(me.json(), { _id: u.id, name: u.name, email: u.email, role: 'doctor', specialization: 'Radiology' });
      assert.equal((await app.users()).length, before, 'a second account was created');

      // Next time the Google account is recognised by its subject, even with another email.
      const again = await app.signIn({ ...account, email: `elsewhere.${randomUUID().slice(0, 8)}@Example.org` });
      assert.equal((await app.me(signedIn(again))).json()._id, u.id);

      const login = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: u.email, password: u.password } });
      assert.equal(login.statusCode, 200, login.body);
      assert.equal(login.json().user._id, u.id);
    });

    test('an unverified Google email is refused with email_not_verified and not linked', async () => {
      const u = await t.user();
      const before = (await app.users()).length;
      const unverified = newAccount({ email: u.email, emailVerified: false });
      assertSignInError(await app.signIn(unverified), 'email_not_verified');
      assert.equal((await app.users()).length, before);

      // Had the unverified account been linked, this other Google account would now be
      // refused as a conflict; instead it is linked to the user with that (verified) email.
      const verified = newAccount({ email: u.email });
      assert.equal((await app.me(signedIn(await app.signIn(verified)))).json()._id, u.id);
    });

    test('Google sign-ins, accepted and refused, are in the audit trail as auth.login like password sign-ins', async () => {
      const u = await t.user();
      const account = newAccount({ email: u.email });
      signedIn(await app.signIn(account));
      await app.setActive(u.id, false);
      assertSignInError(await app.signIn(account), 'account_inactive');
      const res = await t.app.inject({ url: `/api/audit?action=auth.login&resourceId=${u.id}`, headers: admin.auth });
      assert.equal(res.statusCode, 200, res.body);
      const events = res.json<{ events: { outcome: string; actor: { _id: string } | null; detail: unknown; statusCode: number }[] }>().events;
      const byOutcome = Object.fromEntries(events.map((e) => [e.outcome, e]));
      assert.equal(events.length, 2);
      assert.equal(byOutcome.success?.actor?._id, u.id);
      assert.deepEqual(byOutcome.success?.detail, { method: 'google', account: 'linked' });
      assert.equal(byOutcome.denied?.actor, null, 'a refused sign-in has no actor, only the account it tried');
      assert.deepEqual(byOutcome.denied?.detail, { method: 'google', reason: 'account_inactive' });
      assert.ok(!res.body.toLowerCase().includes(u.email.toLowerCase()), 'the trail never holds the email Google sent');

      // A forged callback is recorded too, as an invalid attempt that names no account.
      const before = (await t.app.inject({ url: '/api/audit?action=auth.login&outcome=invalid', headers: admin.auth })).json().totalEvents as number;
      const result = await app.signIn(newAccount(), {
        beforeCallback: (callback) => {
          callback.searchParams.set('state', `${callback.searchParams.get('state')}x`);
        },
      });
      assertSignInError(result, 'invalid_state');
      const invalid = (await t.app.inject({ url: '/api/audit?action=auth.login&outcome=invalid', headers: admin.auth })).json();
      assert.equal(invalid.totalEvents, before + 1);
      assert.deepEqual(invalid.events[0].detail, { method: 'google', reason: 'invalid_state' });
      assert.equal(invalid.events[0].resourceId, null);
    });

    test('a tampered state sends the browser back with invalid_state and creates nobody', async () => {
      const account = newAccount();
      const before = (await app.users()).length;
      const result = await app.signIn(account, {
        beforeCallback: (callback) => {
          callback.searchParams.set('state', `${callback.searchParams.get('state')}x`);
        },
      });
      assertSignInError(result, 'invalid_state');
      assert.equal((await app.users()).length, before);
    });

    test('a deactivated user is refused with account_inactive and their Google token stops working', async () => {
      const u = await t.user();
      const account = newAccount({ email: u.email });
      const token = signedIn(await app.signIn(account));
      assert.equal((await app.me(token)).statusCode, 200);

      await app.setActive(u.id, false);
      assertSignInError(await app.signIn(account), 'account_inactive');
      const me = await app.me(token);
      assert.equal(me.statusCode, 401);
      assert.match(me.json().error, /deactivated/);
    });
    test('two tabs finishing the same first sign-in at once both hear the account awaits activation', async () => {
      const account = newAccount();
      for (const result of await app.signInTwiceAtOnce(account)) {
        // Whichever tab comes second finds the inactive account the first one created.
        const code = result.fragment.get('error');
        assert.ok(code === 'account_pending_activation' || code === 'account_inactive', `got ${code}`);
        assertSignInError(result, code);
      }
      assert.equal((await app.users()).filter((u) => u.email === account.email.toLowerCase()).length, 1);
    });

    test('two tabs linking the same password user at once are both signed in as that user', async () => {
      const u = await t.user();
      const results = await app.signInTwiceAtOnce(newAccount({ email: u.email }));
      for (const result of results) assert.equal((await app.me(signedIn(result))).json()._id, u.id);
    });

    describe('with GOOGLE_ALLOWED_DOMAINS=hospital.test', () => {
      let restricted: FastifyInstance;
      before(async () => {
        restricted = await sameAppWithEnv(t, googleEnv({ GOOGLE_ALLOWED_DOMAINS: 'hospital.test' }));
      });
      after(() => restricted.close());

      test('another domain is refused with domain_not_allowed and no user is created', async () => {
        const domainApp = client(restricted, admin);
        const before = await domainApp.users();
        const outsider = newAccount({ email: `someone-${randomUUID().slice(0, 8)}@other.test` });
        assertSignInError(await domainApp.signIn(outsider), 'domain_not_allowed');
        const after = await domainApp.users();
        assert.equal(after.length, before.length);
        assert.ok(!after.some((u) => u.email === outsider.email));

        // The allowed domain gets through to the usual provisioning (an inactive doctor).
        const member = newAccount({ email: `member-${randomUUID().slice(0, 8)}@hospital.test` });
        assertSignInError(await domainApp.signIn(member), 'account_pending_activation');
        assert.ok((await domainApp.users()).some((u) => u.email === member.email && !u.isActive));
      });
    });

    describe('without GOOGLE_CLIENT_ID', () => {
      let unconfigured: FastifyInstance;
      before(async () => {
        unconfigured = await sameAppWithEnv(t, {});
      });
      after(() => unconfigured.close());

      test('both routes answer 404 with an explanation', async () => {
        for (const url of ['/api/auth/google', '/api/auth/google/callback?code=x&state=y']) {
          const res = await unconfigured.inject({ method: 'GET', url });
          assert.equal(res.statusCode, 404, url);
          assert.deepEqual(res.json(), { error: NOT_CONFIGURED });
          assert.equal(res.headers.location, undefined);
        }
      });
    });
  });
}
