import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestApp, type TestApp } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';

for (const kind of await databaseKinds()) {
  describe(`users (${kind})`, () => {
    let t: TestApp;
    before(async () => {
      t = await createTestApp(kind);
    });
    after(() => t.close());

    test('an admin lists users with the documented fields and no secrets', async () => {
      const admin = await t.user({ role: 'admin' });
      const doc = await t.user({ specialization: 'Radiology' });
      const res = await t.app.inject({ url: '/api/users/users', headers: admin.auth });
      assert.equal(res.statusCode, 200);
      const list = res.json<Record<string, unknown>[]>();
      const row = list.find((u) => u._id === doc.id);
      assert.deepEqual(row, {
        _id: doc.id,
        name: doc.name,
        email: doc.email,
        role: 'doctor',
        specialization: 'Radiology',
        isActive: true,
      });
      assert.ok(!res.body.includes('password'));
      assert.ok(!res.body.includes('argon2'));
    });

    test('doctors get 403 and anonymous callers 401 on every user route', async () => {
      const doc = await t.user();
      for (const [method, url, payload] of [
        ['GET', '/api/users/users', undefined],
        ['POST', '/api/users/users', { name: 'X', email: 'x@y.zz', password: 'violet-tundra-48-quartz', role: 'admin' }],
        ['PATCH', `/api/users/users/${doc.id}`, { role: 'admin' }],
      ] as const) {
        const forbidden = await t.app.inject({ method, url, payload, headers: doc.auth });
        assert.equal(forbidden.statusCode, 403, `${method} ${url}`);
        assert.match(forbidden.json().error, /administrators/);
        const anonymous = await t.app.inject({ method, url, payload });
        assert.equal(anonymous.statusCode, 401, `${method} ${url}`);
      }
    });

    test('an admin creates a user who can then log in', async () => {
      const admin = await t.user({ role: 'admin' });
      const email = `New.Doctor.${Date.now()}@Hospital.test`;
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/users/users',
        headers: admin.auth,
        payload: { name: 'Dr. Ananya Singh', email, password: 'correct horse battery staple', role: 'doctor', specialization: 'Radiology' },
      });
      assert.equal(res.statusCode, 201);
      const created = res.json();
      assert.equal(created.email, email.toLowerCase());
      assert.equal(created.role, 'doctor');
      assert.equal(created.isActive, true);
      const login = await t.app.inject({
        method: 'POST',
        url: '/api/auth/login',
        payload: { email, password: 'correct horse battery staple' },
      });
      assert.equal(login.statusCode, 200);
      assert.equal(login.json().user._id, created._id);
    });

    test('emails are unique regardless of case (409)', async () => {
      const admin = await t.user({ role: 'admin' });
      const existing = await t.user();
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/users/users',
        headers: admin.auth,
        payload: { name: 'Dup', email: existing.email.toUpperCase(), password: 'violet-tundra-48-quartz' },
      });
      assert.equal(res.statusCode, 409);
      assert.match(res.json().error, /already exists/);
    });

    test('create validates fields: short password, bad role, bad email, unknown field', async () => {
      const admin = await t.user({ role: 'admin' });
      const base = { name: 'N', email: `v-${Date.now()}@h.test`, password: 'violet-tundra-48-quartz' };
      for (const [payload, field] of [
        [{ ...base, password: 'short' }, /password/],
        [{ ...base, role: 'superuser' }, /role/],
        [{ ...base, email: 'nope' }, /email/],
        [{ ...base, isAdmin: true }, /isAdmin/],
        [{ email: base.email, password: base.password }, /name/],
      ] as const) {
        const res = await t.app.inject({ method: 'POST', url: '/api/users/users', headers: admin.auth, payload });
        assert.equal(res.statusCode, 400, JSON.stringify(payload));
        assert.match(res.json().error, field);
      }
    });

    test('PATCH changes role, activity and specialization as documented', async () => {
      const admin = await t.user({ role: 'admin' });
      const doc = await t.user();
      const res = await t.app.inject({
        method: 'PATCH',
        url: `/api/users/users/${doc.id}`,
        headers: admin.auth,
        payload: { role: 'admin', isActive: true, specialization: 'Chief Radiology' },
      });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json(), {
        _id: doc.id,
        name: doc.name,
        email: doc.email,
        role: 'admin',
        specialization: 'Chief Radiology',
        isActive: true,
      });
      // A role change ends the sessions issued before it (issue 12, item 4); a new login has the new role.
      const stale = await t.app.inject({ url: '/api/users/users', headers: doc.auth });
      assert.equal(stale.statusCode, 401);
      const login = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: doc.email, password: doc.password } });
      const list = await t.app.inject({ url: '/api/users/users', headers: { authorization: `Bearer ${login.json().token}` } });
      assert.equal(list.statusCode, 200);
    });

    test('PATCH errors: unknown id 404, empty body 400, self-deactivation 400', async () => {
      const admin = await t.user({ role: 'admin' });
      const missing = await t.app.inject({
        method: 'PATCH',
        url: '/api/users/users/00000000-0000-4000-8000-000000000000',
        headers: admin.auth,
        payload: { isActive: false },
      });
      assert.equal(missing.statusCode, 404);
      const notUuid = await t.app.inject({
        method: 'PATCH',
        url: '/api/users/users/67f46037df638f437b934206',
        headers: admin.auth,
        payload: { isActive: false },
      });
      assert.equal(notUuid.statusCode, 404);
      const empty = await t.app.inject({ method: 'PATCH', url: `/api/users/users/${admin.id}`, headers: admin.auth, payload: {} });
      assert.equal(empty.statusCode, 400);
      const self = await t.app.inject({
        method: 'PATCH',
        url: `/api/users/users/${admin.id}`,
        headers: admin.auth,
        payload: { isActive: false },
      });
      assert.equal(self.statusCode, 400);
      assert.match(self.json().error, /your own account/);
    });
  });
}

describe('last admin protection (pglite)', () => {
  test('the last active admin cannot be demoted', async () => {
    const t = await createTestApp('pglite');
    try {
      const admin = await t.user({ role: 'admin' });
      const res = await t.app.inject({
        method: 'PATCH',
        url: `/api/users/users/${admin.id}`,
        headers: admin.auth,
        payload: { role: 'doctor' },
      });
      assert.equal(res.statusCode, 409);
      assert.match(res.json().error, /last active admin/);
    } finally {
      await t.close();
    }
  });
});
