import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestApp, type TestApp } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';

for (const kind of await databaseKinds()) {
  describe(`auth (${kind})`, () => {
    let t: TestApp;
    before(async () => {
      t = await createTestApp(kind);
    });
    after(() => t.close());

    const login = (email: string, password: string) =>
      t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email, password } });

    test('login returns the user and a token that works on /me', async () => {
      const u = await t.user({ specialization: 'Neurology' });
      const res = await login(u.email, u.password);
      assert.equal(res.statusCode, 200);
      const body = res.json();
      assert.deepEqual(body.user, { _id: u.id, name: u.name, email: u.email, role: 'doctor' });
      assert.match(body.token, /^eyJ/);
      const me = await t.app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${body.token}` } });
      assert.equal(me.statusCode, 200);
      assert.deepEqual(me.json(), { _id: u.id, name: u.name, email: u.email, role: 'doctor', specialization: 'Neurology' });
    });

    test('login email is case-insensitive', async () => {
      const u = await t.user();
      const res = await login(u.email.toUpperCase(), u.password);
      assert.equal(res.statusCode, 200);
    });

    test('a wrong password and an unknown email get the same 401', async () => {
      const u = await t.user();
      const wrong = await login(u.email, 'not-the-password');
      const unknown = await login('nobody@hospital.test', 'whatever1');
      assert.equal(wrong.statusCode, 401);
      assert.equal(unknown.statusCode, 401);
      assert.deepEqual(wrong.json(), unknown.json());
      assert.deepEqual(wrong.json(), { error: 'Invalid email or password' });
    });

    test('login validates its body and names the field', async () => {
      const missing = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: 'a@b.co' } });
      assert.equal(missing.statusCode, 400);
      assert.match(missing.json().error, /password/);
      const badEmail = await login('not-an-email', 'x');
      assert.equal(badEmail.statusCode, 400);
      assert.match(badEmail.json().error, /email/);
      const notJson = await t.app.inject({
        method: 'POST',
        url: '/api/auth/login',
        headers: { 'content-type': 'application/json' },
        payload: '{"email":',
      });
      assert.equal(notJson.statusCode, 400);
      assert.ok(notJson.json().error);
    });

    test('a deactivated user cannot log in and their token stops working at once', async () => {
      const admin = await t.user({ role: 'admin' });
      const u = await t.user();
      assert.equal((await t.app.inject({ url: '/api/auth/me', headers: u.auth })).statusCode, 200);
      const off = await t.app.inject({
        method: 'PATCH',
        url: `/api/users/users/${u.id}`,
        headers: admin.auth,
        payload: { isActive: false },
      });
      assert.equal(off.statusCode, 200);
      const me = await t.app.inject({ url: '/api/auth/me', headers: u.auth });
      assert.equal(me.statusCode, 401);
      assert.match(me.json().error, /deactivated/);
      const res = await login(u.email, u.password);
      assert.equal(res.statusCode, 403);
      assert.match(res.json().error, /deactivated/);
    });

    test('/me refuses missing, malformed, forged and expired tokens', async () => {
      const none = await t.app.inject({ url: '/api/auth/me' });
      assert.equal(none.statusCode, 401);
      assert.match(none.json().error, /Authorization: Bearer/);
      const garbage = await t.app.inject({ url: '/api/auth/me', headers: { authorization: 'Bearer abc.def.ghi' } });
      assert.equal(garbage.statusCode, 401);
      const u = await t.user();
      const [h, p] = u.token.split('.');
      const forged = await t.app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${h}.${p}.AAAA` } });
      assert.equal(forged.statusCode, 401);
      const { createTokenService } = await import('./tokens.js');
      // Valid for at least one second (expiry is counted in whole seconds from the issue's).
      const expired = await createTokenService(t.config.jwtSecret, '2s').issue({ id: u.id, tokenVersion: 0 });
      // Used while valid (the server remembers a verified token), then refused once expired.
      const before = await t.app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${expired}` } });
      assert.equal(before.statusCode, 200);
      await new Promise((r) => setTimeout(r, 3100));
      const res = await t.app.inject({ url: '/api/auth/me', headers: { authorization: `Bearer ${expired}` } });
      assert.equal(res.statusCode, 401);
      assert.match(res.json().error, /expired/);
    });
  });
}
