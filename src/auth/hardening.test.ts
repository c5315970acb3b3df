/**
 * Sign-in hardening (issue 12, items 3 and 4): throttling then lockout per account and per
 * address (429 with Retry-After, shared through the database, admin unlock), password
 * strength with reasons, and tokens that stop working on password change, deactivation,
 * role change and logout.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestApp, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { createLoginThrottle } from './throttle.js';

for (const kind of await databaseKinds()) {
  describe(`sign-in hardening (${kind})`, () => {
    let t: TestApp;
    let admin: TestUser;
    before(async () => {
      t = await createTestApp(kind, { env: { LOGIN_MAX_FAILURES: '6', LOGIN_MAX_FAILURES_PER_IP: '20' } });
      admin = await t.user({ role: 'admin' });
    });
    after(() => t.close());

    const login = (email: string, password: string, ip = '10.1.1.1') =>
      t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email, password }, remoteAddress: ip });

    test('wrong passwords slow an account, then lock it: even the right password gets 429 with Retry-After', async () => {
      const u = await t.user();
      const statuses: number[] = [];
      let lastRetry = 0;
      for (let i = 0; i < 12; i++) {
        const res = await login(u.email, `wrong-${i}`, `10.2.0.${i}`);
        statuses.push(res.statusCode);
        if (res.statusCode === 429) {
          lastRetry = Number(res.headers['retry-after']);
          assert.ok(lastRetry >= 1, 'Retry-After in seconds');
          assert.match(res.json().error, /^Too many failed sign-ins for this account: try again in (1 second|\d+ seconds), or ask an administrator to unlock the account$/);
        }
      }
      // The first three are plain failures; then each try must wait.
      assert.deepEqual(statuses.slice(0, 3), [401, 401, 401]);
      assert.ok(statuses.slice(3).every((s) => s === 429), statuses.join(','));
      // Failures keep counting while the account is slowed only when they get through; force the lock:
      const throttle = createLoginThrottle(t.database.db, { ...t.config.loginThrottle, slowAfter: 100 });
      for (let i = 0; i < 6; i++) await throttle.recordFailure(u.email, '10.3.0.1');
      const right = await login(u.email, u.password, '10.4.0.1');
      assert.equal(right.statusCode, 429, 'a locked account refuses the right password too');
      assert.ok(Number(right.headers['retry-after']) > 60, 'the lock lasts minutes');
    });

    test('an admin unlocks the account; anyone else cannot', async () => {
      const u = await t.user();
      const throttle = createLoginThrottle(t.database.db, t.config.loginThrottle);
      for (let i = 0; i < 6; i++) await throttle.recordFailure(u.email, '10.5.0.1');
      assert.equal((await login(u.email, u.password, '10.5.0.2')).statusCode, 429);
      const doctor = await t.user();
      const refused = await t.app.inject({ method: 'POST', url: `/api/users/users/${u.id}/unlock`, headers: doctor.auth });
      assert.equal(refused.statusCode, 403);
      const unlocked = await t.app.inject({ method: 'POST', url: `/api/users/users/${u.id}/unlock`, headers: admin.auth });
      assert.equal(unlocked.statusCode, 200, unlocked.body);
      assert.equal((await login(u.email, u.password, '10.5.0.2')).statusCode, 200);
      const missing = await t.app.inject({ method: 'POST', url: `/api/users/users/00000000-0000-4000-8000-000000000000/unlock`, headers: admin.auth });
      assert.equal(missing.statusCode, 404);
    });

    test('unknown emails are throttled exactly like real ones (no account oracle)', async () => {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) statuses.push((await login(`nobody-${process.pid}@hospital.test`, 'wrong-password', `10.6.0.${i}`)).statusCode);
      assert.deepEqual(statuses, [401, 401, 401, 429, 429]);
    });

    test('one address failing on many accounts is locked for the window', async () => {
      const ip = '10.7.7.7';
      let res: Awaited<ReturnType<typeof login>> | undefined;
      for (let i = 0; i < 20; i++) res = await login(`spray-${i}-${process.pid}@hospital.test`, 'Winter2024!', ip);
      assert.equal(res!.statusCode, 401);
      const u = await t.user();
      const blocked = await login(u.email, u.password, ip);
      assert.equal(blocked.statusCode, 429);
      assert.ok(Number(blocked.headers['retry-after']) > 0);
      // Unlocking the account would not help: the message names the address's lock and its minutes.
      assert.match(
        blocked.json().error,
        /^Too many failed sign-ins from this network address: try again in 1[45] minutes, or ask an administrator to lift the lock on this address$/,
      );
      assert.equal((await login(u.email, u.password, '10.7.7.8')).statusCode, 200, 'other addresses are not affected');
    });

    test('an admin sees the locked addresses and lifts a lock; a doctor can do neither; both are audited', async () => {
      const ip = '10.11.11.11';
      for (let i = 0; i < 20; i++) await login(`ipspray-${i}-${process.pid}@hospital.test`, 'Winter2024!', ip);
      const u = await t.user();
      assert.equal((await login(u.email, u.password, ip)).statusCode, 429);
      const doctor = await t.user();
      assert.equal((await t.app.inject({ url: '/api/users/ip-locks', headers: doctor.auth })).statusCode, 403);
      const unlock = (address: string, auth = admin.auth) =>
        t.app.inject({ method: 'POST', url: `/api/users/ip-locks/${encodeURIComponent(address)}/unlock`, headers: auth });
      assert.equal((await unlock(ip, doctor.auth)).statusCode, 403);
      assert.equal((await t.app.inject({ url: '/api/users/ip-locks' })).statusCode, 401);

      const list = await t.app.inject({ url: '/api/users/ip-locks', headers: admin.auth });
      assert.equal(list.statusCode, 200, list.body);
      const locks = list.json<{ ip: string; failures: number; lockedUntil: string }[]>();
      const lock = locks.find((l) => l.ip === ip);
      assert.ok(lock, list.body);
      assert.equal(lock.failures, 20);
      assert.ok(Date.parse(lock.lockedUntil) > Date.now());
      assert.ok(!list.body.includes('ipspray'), 'the list names addresses, never the accounts tried');

      const lifted = await unlock(ip);
      assert.equal(lifted.statusCode, 200, lifted.body);
      assert.equal((await login(u.email, u.password, ip)).statusCode, 200, 'sign-ins from the address are accepted again');
      assert.ok(!(await t.app.inject({ url: '/api/users/ip-locks', headers: admin.auth })).json().some((l: { ip: string }) => l.ip === ip));
      const again = await unlock(ip);
      assert.equal(again.statusCode, 404, 'no lock to lift');
      assert.equal(again.json().error, `No sign-in lock is held on ${ip}: there is nothing to lift (GET /api/users/ip-locks lists the locked addresses)`);
      assert.equal((await unlock('not-an-address')).statusCode, 400);
      assert.equal((await unlock('1')).statusCode, 400);

      // An IPv4 address written as IPv6 is the same address.
      for (let i = 0; i < 20; i++) await login(`ipspray6-${i}-${process.pid}@hospital.test`, 'Winter2024!', '::ffff:10.12.0.1');
      assert.ok((await t.app.inject({ url: '/api/users/ip-locks', headers: admin.auth })).json().some((l: { ip: string }) => l.ip === '10.12.0.1'));
      assert.equal((await unlock('::ffff:10.12.0.1')).statusCode, 200);

      const trail = await t.app.inject({ url: `/api/audit?action=address.unlock&resourceId=${ip}`, headers: admin.auth });
      const outcomes = (trail.json().events as { outcome: string; actor: { _id: string } | null }[]).map((e) => `${e.outcome}:${e.actor?._id}`).sort();
      assert.deepEqual(outcomes, [`denied:${doctor.id}`, `not_found:${admin.id}`, `success:${admin.id}`].sort());
    });

    test('a signed-in user changes their own password: the current one is required, strength checked, old tokens die, audited', async () => {
      const u = await t.user();
      const otherDevice = (await login(u.email, u.password, '10.13.0.1')).json().token as string;
      const change = (body: object, token: string | null = u.token) =>
        t.app.inject({
          method: 'POST',
          url: '/api/auth/password',
          headers: token ? { authorization: `Bearer ${token}` } : {},
          payload: body,
          remoteAddress: '10.13.0.2',
        });
      const next = 'harbour-Violet-kettle-58';
      assert.equal((await change({ currentPassword: u.password, newPassword: next }, null)).statusCode, 401);
      const wrong = await change({ currentPassword: 'not-my-password-1', newPassword: next });
      assert.equal(wrong.statusCode, 403);
      assert.match(wrong.json().error, /current password is not correct/);
      const weak = await change({ currentPassword: u.password, newPassword: 'password1234' });
      assert.equal(weak.statusCode, 400);
      assert.match(weak.json().error, /too easy to guess/);
      assert.equal((await change({ currentPassword: u.password, newPassword: u.password })).statusCode, 400);
      assert.equal((await me(u)).statusCode, 200, 'refused changes end no session');

      const ok = await change({ currentPassword: u.password, newPassword: next });
      assert.equal(ok.statusCode, 200, ok.body);
      const fresh = ok.json().token as string;
      assert.equal((await me(u)).statusCode, 401, 'the token used for the change has ended');
      assert.equal((await me(u, otherDevice)).statusCode, 401, 'and so has every other session');
      assert.equal((await me(u, fresh)).statusCode, 200, 'the answer carries a working token');
      assert.equal((await login(u.email, u.password, '10.13.0.3')).statusCode, 401);
      assert.equal((await login(u.email, next, '10.13.0.3')).statusCode, 200);

      const trail = await t.app.inject({ url: `/api/audit?action=user.password_change&resourceId=${u.id}`, headers: admin.auth });
      const outcomes = (trail.json().events as { outcome: string }[]).map((e) => e.outcome).sort();
      assert.deepEqual(outcomes, ['denied', 'invalid', 'invalid', 'success']);
      for (const secret of [u.password, next, 'not-my-password-1']) assert.ok(!trail.body.includes(secret));
    });

    test('wrong current passwords count as failed sign-ins: the account is slowed, then locked', async () => {
      const u = await t.user();
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++) {
        const res = await t.app.inject({
          method: 'POST',
          url: '/api/auth/password',
          headers: u.auth,
          payload: { currentPassword: `guess-${i}-password`, newPassword: 'harbour-Violet-kettle-58' },
          remoteAddress: '10.14.0.1',
        });
        statuses.push(res.statusCode);
        if (res.statusCode === 429) assert.ok(Number(res.headers['retry-after']) >= 1);
      }
      assert.deepEqual(statuses, [403, 403, 403, 429, 429]);
      assert.equal((await login(u.email, u.password, '10.14.0.2')).statusCode, 429, 'the same lock as for sign-ins');
    });

    test('counters live in the database: a second app on the same database sees the lock', async () => {
      const u = await t.user();
      for (let i = 0; i < 4; i++) await login(u.email, 'wrong-password', '10.8.0.1');
      const other = createLoginThrottle(t.database.db, t.config.loginThrottle);
      await assert.rejects(other.check(u.email, '10.8.0.99'), /Too many failed sign-ins/);
    });

    test('weak passwords are refused with the reason; strong ones accepted', async () => {
      const email = `ananya.singh.${Date.now()}@hospital.test`;
      const cases: [string, RegExp][] = [
        ['aaaaaaaa', /must be at least 10 characters/],
        ['12345678', /must be at least 10 characters/],
        ['password', /must be at least 10 characters/],
        ['password1234', /too easy to guess: .*common/i],
        ['aaaaaaaaaaaa', /too easy to guess/],
        ['qwertyuiop12', /too easy to guess/],
        [email, /own email address or name/],
        ['AnanyaSingh1990', /own email address or name|too easy/],
      ];
      for (const [password, reason] of cases) {
        const res = await t.app.inject({
          method: 'POST',
          url: '/api/users/users',
          headers: admin.auth,
          payload: { name: 'Ananya Singh', email, password },
        });
        assert.equal(res.statusCode, 400, password);
        assert.match(res.json().error, reason, password);
      }
      const ok = await t.app.inject({
        method: 'POST',
        url: '/api/users/users',
        headers: admin.auth,
        payload: { name: 'Ananya Singh', email, password: 'lantern-orbit-Quiche-71' },
      });
      assert.equal(ok.statusCode, 201, ok.body);
      const change = await t.app.inject({
        method: 'PATCH',
        url: `/api/users/users/${ok.json()._id}`,
        headers: admin.auth,
        payload: { password: 'password1234' },
      });
      assert.equal(change.statusCode, 400);
      assert.match(change.json().error, /too easy to guess/);
    });

    const me = (u: TestUser, token = u.token) =>
      t.app.inject({ method: 'GET', url: '/api/auth/me', headers: { authorization: `Bearer ${token}` } });
    const patchUser = (id: string, payload: object) =>
      t.app.inject({ method: 'PATCH', url: `/api/users/users/${id}`, headers: admin.auth, payload });

    test('a password change ends the old sessions; the new password gives a working token', async () => {
      const u = await t.user();
      assert.equal((await me(u)).statusCode, 200);
      assert.equal((await patchUser(u.id, { password: 'meadow-Copper-stairs-29' })).statusCode, 200);
      const old = await me(u);
      assert.equal(old.statusCode, 401);
      assert.match(old.json().error, /session has ended/);
      const fresh = await login(u.email, 'meadow-Copper-stairs-29', '10.9.0.1');
      assert.equal(fresh.statusCode, 200);
      assert.equal((await me(u, fresh.json().token)).statusCode, 200);
    });

    test('deactivation then reactivation does not revive old tokens; a role change ends them too', async () => {
      const u = await t.user();
      assert.equal((await patchUser(u.id, { isActive: false })).statusCode, 200);
      assert.equal((await me(u)).statusCode, 401);
      assert.equal((await patchUser(u.id, { isActive: true })).statusCode, 200);
      assert.equal((await me(u)).statusCode, 401, 'the token from before deactivation stays dead');
      const v = await t.user();
      assert.equal((await patchUser(v.id, { role: 'admin' })).statusCode, 200);
      assert.equal((await me(v)).statusCode, 401);
      // A change that does not touch access (specialization) keeps sessions.
      const w = await t.user();
      assert.equal((await patchUser(w.id, { specialization: 'Neurology' })).statusCode, 200);
      assert.equal((await me(w)).statusCode, 200);
    });

    test('POST /api/auth/logout ends every session of the user, and needs one', async () => {
      const u = await t.user();
      const second = (await login(u.email, u.password, '10.10.0.1')).json().token as string;
      const out = await t.app.inject({ method: 'POST', url: '/api/auth/logout', headers: u.auth });
      assert.equal(out.statusCode, 200);
      assert.match(out.json().message, /Logged out/);
      assert.equal((await me(u)).statusCode, 401);
      assert.equal((await me(u, second)).statusCode, 401);
      assert.equal((await t.app.inject({ method: 'POST', url: '/api/auth/logout' })).statusCode, 401);
    });

    test('tokens without a version, signed with alg none, or past their expiry are refused', async () => {
      const u = await t.user();
      const [, payload] = u.token.split('.');
      const header = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT' })).toString('base64url');
      assert.equal((await me(u, `${header}.${payload}.`)).statusCode, 401);
      const { SignJWT } = await import('jose');
      const unversioned = await new SignJWT({})
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject(u.id)
        .setIssuer('imagemedix')
        .setAudience('imagemedix-api')
        .setExpirationTime('5m')
        .sign(t.config.jwtSecret);
      assert.equal((await me(u, unversioned)).statusCode, 401);
    });
  });
}
