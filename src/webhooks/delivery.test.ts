/**
 * Publishing and delivery against a real HTTP receiver on 127.0.0.1 that verifies each
 * request with the standardwebhooks reference library. The queue is the test runtime's real
 * pg-boss; most tests take the queued job and call its handler directly (one lets a worker run it).
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { Webhook } from 'standardwebhooks';
import { createTestApp, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { createMetrics } from '../platform/metrics/index.js';
import { openQueue, PermanentJobError, type JobDefinition, type Queue } from '../platform/queue/index.js';
import { webhookDeliveryJob, type WebhookDeliveryDeps } from './deliver.job.js';
import { createEventPublisher } from './publisher.js';
import { webhooksFeature } from './routes.js';
import type { ScanEvent, WebhookDeliveryPayload, WebhookDeliveryPayloadSchema, WebhookEventType } from './types.js';

const log = pino({ level: 'silent' });

interface Received {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

type Answer = { status: number; headers?: Record<string, string>; delayMs?: number };

/** A webhook receiver on 127.0.0.1 that records every request and answers as told. */
async function startReceiver(answer: (n: number) => Answer = () => ({ status: 204 })) {
  const received: Received[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() });
      const a = answer(received.length);
      const reply = () => res.writeHead(a.status, a.headers).end('ok');
      if (a.delayMs) setTimeout(reply, a.delayMs).unref();
      else reply();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    received,
    port,
    url: `http://127.0.0.1:${port}/hooks/imagemedix`,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** What the receiver saw, checked the way a receiver would: the signature must verify. */
function verified(secret: string, r: Received): unknown {
  return new Webhook(secret).verify(r.body, {
    'webhook-id': String(r.headers['webhook-id']),
    'webhook-timestamp': String(r.headers['webhook-timestamp']),
    'webhook-signature': String(r.headers['webhook-signature']),
  });
}

async function waitFor(what: string, check: () => boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

for (const kind of await databaseKinds()) {
  describe(`webhook delivery (${kind})`, () => {
    let t: TestApp;
    let queue: Queue;
    const deliveryDeps = (): WebhookDeliveryDeps => ({ db: t.ctx.db, timeoutMs: 5000, maxAttempts: 3, allowPrivate: true });
    let job: JobDefinition<typeof WebhookDeliveryPayloadSchema>;
    const eventTime = new Date('2025-05-05T10:00:00.000Z');
    let publisher: ReturnType<typeof createEventPublisher>;

    before(async () => {
      t = await createTestApp(kind, {
        build: () => ({
          features: [webhooksFeature],
        }),
      });
      job = webhookDeliveryJob(deliveryDeps());
      queue = t.runtime.queue;
      publisher = createEventPublisher({ queue, deliveryJob: job, now: () => eventTime });
    });
    after(() => t.close());

    async function subscribe(owner: TestUser, url: string, events: WebhookEventType[] = ['scan.uploaded', 'scan.analyzed', 'scan.failed']) {
      const res = await t.app.inject({ method: 'POST', url: '/api/webhooks', headers: owner.auth, payload: { url, events } });
      assert.equal(res.statusCode, 201, res.body);
      return res.json<{ _id: string; secret: string }>();
    }

    async function publish(event: ScanEvent) {
      await t.ctx.db.transaction((tx) => publisher.publish(tx, event));
    }

    /** Takes the queued deliveries off the queue (as a worker would), keyed by webhook. */
    async function takeQueued(): Promise<Map<string, WebhookDeliveryPayload[]>> {
      const byWebhook = new Map<string, WebhookDeliveryPayload[]>();
      for (const payload of await queue.take(job, 100)) {
        byWebhook.set(payload.webhookId, [...(byWebhook.get(payload.webhookId) ?? []), payload]);
      }
      return byWebhook;
    }

    async function onlyQueued(webhookId: string): Promise<WebhookDeliveryPayload> {
      const queued = (await takeQueued()).get(webhookId) ?? [];
      assert.equal(queued.length, 1, 'one delivery queued for the webhook');
      return queued[0]!;
    }

    const run = (definition: JobDefinition<typeof WebhookDeliveryPayloadSchema>, payload: WebhookDeliveryPayload, attempt = 1) =>
      definition.handler(payload, { jobId: randomUUID(), attempt, log });

    async function deliveries(user: TestUser, webhookId: string, query = '') {
      const res = await t.app.inject({ url: `/api/webhooks/${webhookId}/deliveries${query}`, headers: user.auth });
      assert.equal(res.statusCode, 200, res.body);
      return res.json().deliveries as Array<Record<string, unknown>>;
    }

    async function scanEvent(owner: TestUser, type: WebhookEventType = 'scan.analyzed'): Promise<ScanEvent> {
      const patient = await t.patient(owner);
      return { type, scanId: randomUUID(), patientId: patient._id, status: type === 'scan.failed' ? 'failed' : 'completed' };
    }

    test('a published event reaches the receiver signed, with exactly {type, timestamp, data: {scanId, patientId, status}}', async () => {
      const receiver = await startReceiver();
      try {
        const doctor = await t.user();
        const hook = await subscribe(doctor, receiver.url);
        const event = await scanEvent(doctor);
        await publish(event);
        await run(job, await onlyQueued(hook._id));

        assert.equal(receiver.received.length, 1);
        const [r] = receiver.received;
        assert.equal(r!.method, 'POST');
        assert.equal(r!.path, '/hooks/imagemedix');
        assert.equal(r!.headers['content-type'], 'application/json');
        assert.equal(r!.headers['user-agent'], 'ImageMedix-Webhooks/1.0');
        assert.match(String(r!.headers['webhook-id']), /^msg_[A-Za-z0-9_-]+$/);
        assert.match(String(r!.headers['webhook-signature']), /^v1,[A-Za-z0-9+/]+=*$/);
        assert.ok(Math.abs(Number(r!.headers['webhook-timestamp']) - Date.now() / 1000) < 30, 'timestamp of the attempt');
        assert.deepEqual(verified(hook.secret, r!), {
          type: 'scan.analyzed',
          timestamp: '2025-05-05T10:00:00.000Z',
          data: { scanId: event.scanId, patientId: event.patientId, status: 'completed' },
        });
        assert.throws(() => verified(`whsec_${Buffer.alloc(24, 1).toString('base64')}`, r!), /signature/, 'another secret does not verify');

        const [d] = await deliveries(doctor, hook._id);
        assert.equal(d!.messageId, r!.headers['webhook-id']);
        assert.equal(d!.eventType, 'scan.analyzed');
        assert.equal(d!.attempt, 1);
        assert.equal(d!.statusCode, 204);
        assert.equal(d!.succeeded, true);
        assert.equal(d!.error, null);
        assert.equal(typeof d!.durationMs, 'number');

        // Run twice (a worker died after sending): the message is not sent again.
        await run(job, { webhookId: hook._id, messageId: String(r!.headers['webhook-id']), eventType: 'scan.analyzed', patientId: event.patientId, body: r!.body });
        assert.equal(receiver.received.length, 1);
      } finally {
        await receiver.close();
      }
    });

    test('an event in a rolled-back transaction is never queued', async () => {
      const doctor = await t.user();
      const hook = await subscribe(doctor, 'http://127.0.0.1:9/never');
      const event = await scanEvent(doctor);
      await assert.rejects(
        t.ctx.db.transaction(async (tx) => {
          await publisher.publish(tx, event);
          throw new Error('upload failed after the event');
        }),
        /upload failed/,
      );
      assert.equal((await takeQueued()).get(hook._id), undefined);
    });

    test("events go only to webhooks whose owner may see the patient, and only for subscribed types", async () => {
      const assigned = await t.user();
      const otherDoctor = await t.user();
      const admin = await t.user({ role: 'admin' });
      const mine = await subscribe(assigned, 'http://127.0.0.1:9/mine');
      const notSubscribed = await subscribe(assigned, 'http://127.0.0.1:9/failures', ['scan.failed']);
      const foreign = await subscribe(otherDoctor, 'http://127.0.0.1:9/foreign');
      const adminHook = await subscribe(admin, 'http://127.0.0.1:9/admin');

      const event = await scanEvent(assigned, 'scan.uploaded');
      await publish(event);
      const queued = await takeQueued();
      assert.equal(queued.get(mine._id)?.length, 1);
      assert.equal(queued.get(adminHook._id)?.length, 1, "an admin's webhook receives every patient's events");
      assert.equal(queued.get(foreign._id), undefined, "another doctor's webhook receives nothing about this patient");
      assert.equal(queued.get(notSubscribed._id), undefined, 'a webhook receives only the types it subscribed to');
      assert.notEqual(queued.get(mine._id)![0]!.messageId, queued.get(adminHook._id)![0]!.messageId);
      assert.equal(queued.get(mine._id)![0]!.body, queued.get(adminHook._id)![0]!.body);

      // Once assigned, the other doctor's webhook receives that patient's events too.
      const assign = await t.app.inject({
        method: 'POST',
        url: `/api/patients/${event.patientId}/assign-doctor`,
        headers: admin.auth,
        payload: { doctorId: otherDoctor.id },
      });
      assert.equal(assign.statusCode, 200, assign.body);
      await publish({ ...event, type: 'scan.failed', status: 'failed' });
      const next = await takeQueued();
      assert.equal(next.get(foreign._id)?.length, 1);
      assert.equal(next.get(notSubscribed._id)?.length, 1);
    });

    test('a receiver that answers 500 then 200 gets the same bytes and webhook-id twice; both attempts are recorded', async () => {
      const receiver = await startReceiver((n) => ({ status: n === 1 ? 500 : 200 }));
      try {
        const doctor = await t.user();
        const hook = await subscribe(doctor, receiver.url);
        await publish(await scanEvent(doctor, 'scan.failed'));
        const payload = await onlyQueued(hook._id);
        const metrics = createMetrics({ defaultMetrics: false });
        const counted = webhookDeliveryJob({ ...deliveryDeps(), metrics });

        await assert.rejects(run(counted, payload, 1), (err: Error) => !(err instanceof PermanentJobError) && /500/.test(err.message));
        await run(counted, payload, 2);
        // One failed attempt, counted for the operator's dashboard; the success is not a failure.
        assert.match(await metrics.render(), /imagemedix_webhook_delivery_failures_total\{reason="status"\} 1\n/);

        assert.equal(receiver.received.length, 2);
        const [first, second] = receiver.received;
        assert.equal(first!.headers['webhook-id'], second!.headers['webhook-id']);
        assert.equal(first!.body, second!.body);
        verified(hook.secret, first!);
        verified(hook.secret, second!);

        const attempts = await deliveries(doctor, hook._id);
        assert.deepEqual(
          attempts.map((d) => [d.attempt, d.statusCode, d.succeeded, d.error]),
          [
            [2, 200, true, null],
            [1, 500, false, 'the receiver answered 500'],
          ],
          'newest first',
        );
        assert.equal(attempts[0]!.messageId, attempts[1]!.messageId);
        assert.equal((await deliveries(doctor, hook._id, '?limit=1')).length, 1);
      } finally {
        await receiver.close();
      }
    });

    test('the worker delivers queued events and pg-boss retries a failed attempt with backoff', async () => {
      const receiver = await startReceiver((n) => ({ status: n === 1 ? 503 : 200 }));
      try {
        const doctor = await t.user();
        const hook = await subscribe(doctor, receiver.url);
        await publish(await scanEvent(doctor));
        // The runtime's registered delivery job (the same settings as `job`, from the test config).
        await queue.work(job.name, { concurrency: 1, pollIntervalSeconds: 0.5, log });
        await waitFor('two delivery attempts', () => receiver.received.length >= 2);
        let attempts = await deliveries(doctor, hook._id);
        const deadline = Date.now() + 5000;
        while (attempts.length < 2 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 50));
          attempts = await deliveries(doctor, hook._id);
        }
        assert.deepEqual(
          attempts.map((d) => [d.attempt, d.statusCode, d.succeeded]),
          [
            [2, 200, true],
            [1, 503, false],
          ],
        );
        assert.equal(receiver.received[0]!.headers['webhook-id'], receiver.received[1]!.headers['webhook-id']);
      } finally {
        await queue.stopWorking(job.name);
        await receiver.close();
      }
    });

    test("each event's retry state: the queue's next retry time after a failure, then 'gave up' after the last try", async () => {
      const flaky = await startReceiver(() => ({ status: 503 }));
      const refusing = await startReceiver(() => ({ status: 410 }));
      const twoTries = webhookDeliveryJob({ ...deliveryDeps(), maxAttempts: 2 });
      const publishing = createEventPublisher({ queue, deliveryJob: twoTries });
      // A worker of its own, with this two-try definition registered in place of the app's.
      const twoTriesQueue = await openQueue(t.database, { log, supervise: false });
      await twoTriesQueue.register([twoTries.name], [twoTries]);
      /** The deliveries of `hook` once `ready` holds for them (the worker runs meanwhile). */
      const deliveriesOnce = async (user: TestUser, hookId: string, what: string, ready: (d: Array<Record<string, unknown>>) => boolean) => {
        const deadline = Date.now() + 20_000;
        for (;;) {
          const list = await deliveries(user, hookId);
          if (ready(list)) return list;
          if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(list)}`);
          await new Promise((r) => setTimeout(r, 100));
        }
      };
      try {
        const doctor = await t.user();
        const retried = await subscribe(doctor, flaky.url);
        const refused = await subscribe(doctor, refusing.url);
        const event = await scanEvent(doctor);
        await t.ctx.db.transaction((tx) => publishing.publish(tx, event));
        await twoTriesQueue.work(twoTries.name, { concurrency: 1, pollIntervalSeconds: 0.5, log });

        // The first try failed with a retryable 503: the retry waits in the queue with its backoff.
        const [first] = await deliveriesOnce(doctor, retried._id, 'a scheduled retry', (d) =>
          d.length === 1 && typeof d[0]!.nextRetryAt === 'string' && Date.parse(String(d[0]!.nextRetryAt)) > Date.parse(String(d[0]!.createdAt)),
        );
        assert.equal(first!.attempt, 1);
        assert.equal(first!.gaveUp, false);
        const wait = Date.parse(String(first!.nextRetryAt)) - Date.parse(String(first!.createdAt));
        // pg-boss's backoff for the first retry of a 2 s delay: 2 to 4 s after the failure.
        assert.ok(wait >= 1500 && wait <= 4500, `first retry due ${wait} ms after the attempt`);

        // The second try was the last (2 attempts in all): the event is given up, nothing is due.
        const [last, earlier] = await deliveriesOnce(doctor, retried._id, 'giving up', (d) => d.length === 2 && d[0]!.gaveUp === true);
        assert.deepEqual(
          [last, earlier].map((d) => [d!.attempt, d!.succeeded, d!.nextRetryAt, d!.gaveUp]),
          [
            [2, false, null, true],
            [1, false, null, false],
          ],
          'only the latest attempt of an event carries its state',
        );

        // A 410 is not retried: given up at once, after one attempt.
        const [only] = await deliveriesOnce(doctor, refused._id, 'the refused delivery', (d) => d.length === 1 && d[0]!.gaveUp === true);
        assert.equal(only!.statusCode, 410);
        assert.equal(only!.nextRetryAt, null);
        assert.equal(flaky.received.length, 2);
        assert.equal(refusing.received.length, 1);
      } finally {
        await twoTriesQueue.stop();
        await flaky.close();
        await refusing.close();
      }
    });

    test('a redirect is not followed and fails for good', async () => {
      const receiver = await startReceiver(() => ({ status: 302, headers: { location: '/elsewhere' } }));
      try {
        const doctor = await t.user();
        const hook = await subscribe(doctor, receiver.url);
        await publish(await scanEvent(doctor));
        await assert.rejects(run(job, await onlyQueued(hook._id)), PermanentJobError);
        assert.deepEqual(
          receiver.received.map((r) => r.path),
          ['/hooks/imagemedix'],
          'the Location was never requested',
        );
        const [d] = await deliveries(doctor, hook._id);
        assert.equal(d!.statusCode, 302);
        assert.equal(d!.succeeded, false);
        assert.match(String(d!.error), /redirects are not followed/);
      } finally {
        await receiver.close();
      }
    });

    test('a 4xx other than 408/429 fails for good; the last retryable failure gives up', async () => {
      const receiver = await startReceiver((n) => ({ status: n === 1 ? 410 : 429 }));
      try {
        const doctor = await t.user();
        const hook = await subscribe(doctor, receiver.url);
        await publish(await scanEvent(doctor));
        const payload = await onlyQueued(hook._id);
        await assert.rejects(run(job, payload, 1), PermanentJobError);
        await assert.rejects(run(job, payload, 3), PermanentJobError, 'attempt 3 of 3 is the last');
        const attempts = await deliveries(doctor, hook._id);
        assert.match(String(attempts[0]!.error), /answered 429; giving up after 3 attempts/);
        assert.match(String(attempts[1]!.error), /answered 410; not retried/);
      } finally {
        await receiver.close();
      }
    });

    test('the timeout is honoured: a slow receiver is a retryable failure', async () => {
      const receiver = await startReceiver(() => ({ status: 200, delayMs: 3000 }));
      try {
        const doctor = await t.user();
        const hook = await subscribe(doctor, receiver.url);
        await publish(await scanEvent(doctor));
        const fast = webhookDeliveryJob({ ...deliveryDeps(), timeoutMs: 300 });
        const started = Date.now();
        await assert.rejects(run(fast, await onlyQueued(hook._id)), (err: Error) => !(err instanceof PermanentJobError));
        assert.ok(Date.now() - started < 2000, `gave up after ${Date.now() - started} ms`);
        const [d] = await deliveries(doctor, hook._id);
        assert.equal(d!.statusCode, null);
        assert.equal(d!.succeeded, false);
        assert.equal(d!.error, 'timed out after 300 ms');
        assert.ok(Number(d!.durationMs) >= 290 && Number(d!.durationMs) < 2000, `durationMs ${String(d!.durationMs)}`);
      } finally {
        await receiver.close();
      }
    });

    test('a private target is refused by default: recorded, permanent, never contacted', async () => {
      const receiver = await startReceiver();
      try {
        const doctor = await t.user();
        const hook = await subscribe(doctor, receiver.url);
        await publish(await scanEvent(doctor));
        const metrics = createMetrics({ defaultMetrics: false });
        const strict = webhookDeliveryJob({ ...deliveryDeps(), allowPrivate: false, metrics });
        await assert.rejects(run(strict, await onlyQueued(hook._id)), PermanentJobError);
        assert.equal(receiver.received.length, 0);
        assert.match(await metrics.render(), /imagemedix_webhook_delivery_failures_total\{reason="refused"\} 1\n/);
        const [d] = await deliveries(doctor, hook._id);
        assert.equal(d!.succeeded, false);
        assert.equal(d!.statusCode, null);
        assert.match(String(d!.error), /target refused: 127\.0\.0\.1 is not a public address \(loopback\)/);
      } finally {
        await receiver.close();
      }
    });

    test('the connection goes to the vetted address, not to a second DNS answer', async () => {
      const receiver = await startReceiver();
      try {
        const doctor = await t.user();
        const hook = await subscribe(doctor, `http://receiver.imagemedix.invalid:${receiver.port}/hooks/imagemedix`);
        await publish(await scanEvent(doctor));
        const lookups: string[] = [];
        const pinned = webhookDeliveryJob({
          ...deliveryDeps(),
          resolve: async (host) => {
            lookups.push(host);
            return [{ address: '127.0.0.1', family: 4 }];
          },
        });
        await run(pinned, await onlyQueued(hook._id));
        assert.deepEqual(lookups, ['receiver.imagemedix.invalid'], 'resolved once, by the check');
        assert.equal(receiver.received.length, 1, 'a name the system resolver does not know was reached via the vetted address');
        assert.equal(receiver.received[0]!.headers.host, `receiver.imagemedix.invalid:${receiver.port}`);
      } finally {
        await receiver.close();
      }
    });

    test('a webhook deleted while its delivery is in flight: the attempt ends quietly, neither failed nor retried', async () => {
      const doctor = await t.user();
      for (const statusCode of [200, 500]) {
        const hook = await subscribe(doctor, 'http://127.0.0.1:9/hooks/imagemedix');
        await publish(await scanEvent(doctor));
        const payload = await onlyQueued(hook._id);
        // The owner deletes the webhook while the receiver is still answering.
        const deleting = webhookDeliveryJob({
          ...deliveryDeps(),
          send: async () => {
            const res = await t.app.inject({ method: 'DELETE', url: `/api/webhooks/${hook._id}`, headers: doctor.auth });
            assert.equal(res.statusCode, 200, res.body);
            return { statusCode };
          },
        });
        await run(deleting, payload);
      }
    });

    test('deliveries of a deleted webhook, or to an owner who may no longer see the patient, are skipped', async () => {
      const receiver = await startReceiver();
      try {
        const doctor = await t.user();
        const admin = await t.user({ role: 'admin' });
        const gone = await subscribe(doctor, receiver.url);
        await publish(await scanEvent(doctor));
        const payload = await onlyQueued(gone._id);
        await t.app.inject({ method: 'DELETE', url: `/api/webhooks/${gone._id}`, headers: doctor.auth });
        await run(job, payload);

        const promoted = await t.user();
        const hook = await subscribe(promoted, receiver.url);
        const event = await scanEvent(admin);
        // Queued while the owner could see the patient (as an admin), delivered after demotion.
        await t.app.inject({ method: 'PATCH', url: `/api/users/users/${promoted.id}`, headers: admin.auth, payload: { role: 'admin' } });
        await publish(event);
        const queued = await onlyQueued(hook._id);
        const demote = await t.app.inject({
          method: 'PATCH',
          url: `/api/users/users/${promoted.id}`,
          headers: admin.auth,
          payload: { role: 'doctor' },
        });
        assert.equal(demote.statusCode, 200, demote.body);
        await run(job, queued);
        assert.equal(receiver.received.length, 0);
        assert.deepEqual(await deliveries(admin, hook._id), []);
      } finally {
        await receiver.close();
      }
    });
  });
}
