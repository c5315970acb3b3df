import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { createTestApp, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { webhooksFeature } from './routes.js';

const withWebhooks = (env?: Record<string, string>) => ({
  ...(env ? { env } : {}),
  build: () => ({
    features: [webhooksFeature],
  }),
});

for (const kind of await databaseKinds()) {
  describe(`webhook subscriptions (${kind})`, () => {
    let t: TestApp;
    before(async () => {
      t = await createTestApp(kind, withWebhooks());
    });
    after(() => t.close());

    const create = (user: TestUser, payload: Record<string, unknown>) =>
      t.app.inject({ method: 'POST', url: '/api/webhooks', headers: user.auth, payload });
    const list = async (user: TestUser) => {
      const res = await t.app.inject({ url: '/api/webhooks', headers: user.auth });
      assert.equal(res.statusCode, 200);
      return res.json().webhooks as Array<Record<string, unknown>>;
    };

    test('create answers 201 with a whsec_ secret shown once; the list never shows it', async () => {
      const doctor = await t.user();
      const res = await create(doctor, {
        url: 'https://hooks.example.org/imagemedix',
        events: ['scan.analyzed', 'scan.failed'],
        description: ' PACS bridge ',
      });
      assert.equal(res.statusCode, 201);
      const body = res.json();
      assert.deepEqual(Object.keys(body).sort(), [
        '_id',
        'createdAt',
        'description',
        'events',
        'isActive',
        'ownerId',
        'secret',
        'url',
      ]);
      assert.equal(body.url, 'https://hooks.example.org/imagemedix');
      assert.deepEqual(body.events, ['scan.analyzed', 'scan.failed']);
      assert.equal(body.description, 'PACS bridge');
      assert.equal(body.isActive, true);
      assert.equal(body.ownerId, doctor.id);
      assert.match(body.secret, /^whsec_[A-Za-z0-9+/]{32}$/);
      assert.equal(Buffer.from(body.secret.slice('whsec_'.length), 'base64').length, 24);

      const listed = await list(doctor);
      assert.equal(listed.length, 1);
      const { secret: _secret, ...withoutSecret } = body;
      assert.deepEqual(listed[0], withoutSecret);
      assert.ok(!JSON.stringify(listed).includes(body.secret));

      const other = await create(doctor, { url: 'https://hooks.example.org/other', events: ['scan.uploaded'] });
      assert.notEqual(other.json().secret, body.secret, 'each webhook gets its own secret');
      assert.equal(other.json().description, null);
    });

    test('a doctor sees and manages only their own webhooks; another doctor gets 404; admins see all', async () => {
      const owner = await t.user();
      const stranger = await t.user();
      const admin = await t.user({ role: 'admin' });
      const mine = (await create(owner, { url: 'https://hooks.example.org/a', events: ['scan.uploaded'] })).json();
      const theirs = (await create(stranger, { url: 'https://hooks.example.org/b', events: ['scan.uploaded'] })).json();

      assert.deepEqual((await list(owner)).map((w) => w._id), [mine._id]);
      assert.deepEqual((await list(stranger)).map((w) => w._id), [theirs._id]);
      const all = (await list(admin)).map((w) => w._id);
      assert.ok(all.includes(mine._id) && all.includes(theirs._id));

      const peek = await t.app.inject({ url: `/api/webhooks/${mine._id}/deliveries`, headers: stranger.auth });
      assert.equal(peek.statusCode, 404);
      const missing = await t.app.inject({ url: `/api/webhooks/${randomUUID()}/deliveries`, headers: stranger.auth });
      assert.deepEqual(peek.json(), missing.json(), '"not yours" reads exactly like "not there"');
      const notAnId = await t.app.inject({ url: '/api/webhooks/not-a-uuid/deliveries', headers: owner.auth });
      assert.equal(notAnId.statusCode, 404);

      const steal = await t.app.inject({ method: 'DELETE', url: `/api/webhooks/${mine._id}`, headers: stranger.auth });
      assert.equal(steal.statusCode, 404);
      assert.deepEqual((await list(owner)).map((w) => w._id), [mine._id], 'still there after the refused delete');

      const own = await t.app.inject({ url: `/api/webhooks/${mine._id}/deliveries`, headers: owner.auth });
      assert.equal(own.statusCode, 200);
      assert.deepEqual(own.json(), { deliveries: [] });
      const asAdmin = await t.app.inject({ url: `/api/webhooks/${mine._id}/deliveries`, headers: admin.auth });
      assert.equal(asAdmin.statusCode, 200);

      const del = await t.app.inject({ method: 'DELETE', url: `/api/webhooks/${mine._id}`, headers: owner.auth });
      assert.equal(del.statusCode, 200);
      assert.deepEqual(await list(owner), []);
      const again = await t.app.inject({ method: 'DELETE', url: `/api/webhooks/${mine._id}`, headers: owner.auth });
      assert.equal(again.statusCode, 404);

      const byAdmin = await t.app.inject({ method: 'DELETE', url: `/api/webhooks/${theirs._id}`, headers: admin.auth });
      assert.equal(byAdmin.statusCode, 200);
      assert.deepEqual(await list(stranger), []);
    });

    test('every route requires authentication', async () => {
      const id = randomUUID();
      for (const [method, url] of [
        ['POST', '/api/webhooks'],
        ['GET', '/api/webhooks'],
        ['DELETE', `/api/webhooks/${id}`],
        ['GET', `/api/webhooks/${id}/deliveries`],
      ] as const) {
        const res = await t.app.inject({
          method,
          url,
          ...(method === 'POST' ? { payload: { url: 'https://hooks.example.org/x', events: ['scan.uploaded'] } } : {}),
        });
        assert.equal(res.statusCode, 401, `${method} ${url}`);
        assert.match(res.json().error, /Authentication required/);
      }
    });

    test('invalid bodies are refused with a 400 that names the problem', async () => {
      const doctor = await t.user();
      const cases: Array<[Record<string, unknown>, RegExp]> = [
        [{ url: 'not a url', events: ['scan.uploaded'] }, /^body field "url" must be an absolute URL such as https:\/\/hooks\.example\.org\/imagemedix; got "not a url"$/],
        [{ url: '/relative/path', events: ['scan.uploaded'] }, /url" must be an absolute URL/],
        // http is allowed on this server (WEBHOOK_ALLOW_PRIVATE), so the message names both schemes.
        [{ url: 'ftp://files.example.org/drop', events: ['scan.uploaded'] }, /^url must use https:\/\/ or http:\/\/, got "ftp:"$/],
        [{ url: 'javascript:alert(1)', events: ['scan.uploaded'] }, /url/],
        [{ url: 'https://hooks.example.org:99999/x', events: ['scan.uploaded'] }, /^url "https:\/\/hooks\.example\.org:99999\/x" is not a usable URL: check its host and port \(at most 65535\)$/],
        [{ url: 'https://user:pw@hooks.example.org/x', events: ['scan.uploaded'] }, /credentials/],
        [{ url: 'https://hooks.example.org/x', events: ['scan.deleted'] }, /events\.0" must be one of "scan\.uploaded", "scan\.analyzed", "scan\.failed"; got "scan\.deleted"/],
        [{ url: 'https://hooks.example.org/x', events: [] }, /events/],
        [{ url: 'https://hooks.example.org/x', events: ['scan.failed', 'scan.failed'] }, /events.*duplicate/],
        [{ url: 'https://hooks.example.org/x' }, /"events" is required/],
        [{ url: 'https://hooks.example.org/x', events: ['scan.failed'], secret: 'mine' }, /"secret" is not allowed/],
      ];
      for (const [payload, message] of cases) {
        const res = await create(doctor, payload);
        assert.equal(res.statusCode, 400, JSON.stringify(payload));
        assert.match(res.json().error, message, JSON.stringify(payload));
      }
      assert.deepEqual(await list(doctor), [], 'nothing was created');
      const badLimit = await t.app.inject({ url: `/api/webhooks/${randomUUID()}/deliveries?limit=0`, headers: doctor.auth });
      assert.equal(badLimit.statusCode, 400);
    });

    // Found by the API exploratory pass: an internationalised host name was refused as "must be a valid uri".
    test('a webhook on an internationalised host name is accepted and stored as its punycode', async () => {
      const doctor = await t.user();
      const res = await create(doctor, { url: 'https://bücher.example/hook', events: ['scan.analyzed'] });
      assert.equal(res.statusCode, 201, res.body);
      assert.equal(res.json().url, 'https://xn--bcher-kva.example/hook');
    });

    test('a user may have at most 25 webhooks', async () => {
      const doctor = await t.user();
      for (let i = 0; i < 25; i++) {
        const res = await create(doctor, { url: `https://hooks.example.org/${i}`, events: ['scan.uploaded'] });
        assert.equal(res.statusCode, 201);
      }
      const res = await create(doctor, { url: 'https://hooks.example.org/26', events: ['scan.uploaded'] });
      assert.equal(res.statusCode, 409);
      assert.match(res.json().error, /25 webhooks/);
      const someoneElse = await create(await t.user(), { url: 'https://hooks.example.org/1', events: ['scan.uploaded'] });
      assert.equal(someoneElse.statusCode, 201, 'the limit is per user');
    });
  });

  describe(`webhook targets without WEBHOOK_ALLOW_PRIVATE (${kind})`, () => {
    let t: TestApp;
    before(async () => {
      t = await createTestApp(kind, withWebhooks({ WEBHOOK_ALLOW_PRIVATE: 'false' }));
    });
    after(() => t.close());

    test('private, loopback and link-local targets are refused with a clear 400', async () => {
      const doctor = await t.user();
      const refused: Array<[string, RegExp]> = [
        ['https://127.0.0.1/hook', /127\.0\.0\.1 is not a public address \(loopback\)/],
        ['https://0x7f.1/hook', /loopback/],
        ['https://localhost:8443/hook', /localhost resolves to .* \(loopback\)/],
        ['https://[::1]/hook', /loopback/],
        ['https://[::ffff:127.0.0.1]/hook', /loopback/],
        ['https://169.254.169.254/latest/meta-data', /link-local/],
        ['https://10.0.0.7/hook', /private/],
        ['https://192.168.1.20/hook', /private/],
        ['https://[fd12:3456::1]/hook', /unique-local/],
        ['https://[fe80::1]/hook', /link-local/],
        ['https://0.0.0.0/hook', /unspecified/],
      ];
      for (const [url, reason] of refused) {
        const res = await t.app.inject({
          method: 'POST',
          url: '/api/webhooks',
          headers: doctor.auth,
          payload: { url, events: ['scan.analyzed'] },
        });
        assert.equal(res.statusCode, 400, url);
        assert.match(res.json().error, reason, url);
        assert.match(res.json().error, /WEBHOOK_ALLOW_PRIVATE=true/, url);
      }
      const list = await t.app.inject({ url: '/api/webhooks', headers: doctor.auth });
      assert.deepEqual(list.json(), { webhooks: [] });
    });

    test('public targets must use https; a public https target is accepted', async () => {
      const doctor = await t.user();
      const plain = await t.app.inject({
        method: 'POST',
        url: '/api/webhooks',
        headers: doctor.auth,
        payload: { url: 'http://93.184.215.14/hook', events: ['scan.analyzed'] },
      });
      assert.equal(plain.statusCode, 400);
      assert.match(plain.json().error, /^url must use https:\/\/, got "http:" \(plain http:\/\/ is accepted only where WEBHOOK_ALLOW_PRIVATE=true\)$/);
      const ftp = await t.app.inject({
        method: 'POST',
        url: '/api/webhooks',
        headers: doctor.auth,
        payload: { url: 'ftp://93.184.215.14/hook', events: ['scan.analyzed'] },
      });
      assert.equal(ftp.statusCode, 400);
      assert.match(ftp.json().error, /^url must use https:\/\/, got "ftp:" \(plain http:\/\/ is accepted only where WEBHOOK_ALLOW_PRIVATE=true\)$/);
      const tls = await t.app.inject({
        method: 'POST',
        url: '/api/webhooks',
        headers: doctor.auth,
        payload: { url: 'https://93.184.215.14/hook', events: ['scan.analyzed'] },
      });
      assert.equal(tls.statusCode, 201, tls.body);
    });
  });
}
