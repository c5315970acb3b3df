/**
 * Faults in a running deployment (docs/deployment.md), with real processes: kill -9 of an API
 * process and of a worker during a load, a PostgreSQL restart (a throwaway server of the test's
 * own, never the shared one), and SIGTERM to an API process and to a worker with work in flight.
 * What must hold: no upload that got its 201 is lost, no scan stays pending or processing, and
 * no webhook event reaches the receiver under two different webhook-ids.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inArray } from 'drizzle-orm';
import { analyses, scans } from '../../src/platform/db/schema.js';
import {
  halfSentUpload,
  pendingJobs,
  pgBinAvailable,
  reachable,
  startCluster,
  startThrowawayPostgres,
  until,
  uploadTo,
  type Child,
  type Cluster,
  type ThrowawayPostgres,
} from '../helpers/cluster.js';

const redis = await reachable('redis');
const postgres = await reachable('postgres');
const pgBin = await pgBinAvailable();

/** Settles the accepted scans: every one analysed, nothing left to run. */
async function waitSettled(c: Cluster, what: string) {
  await until(
    what,
    async () => {
      const rows = await c.database.db.select({ status: scans.status }).from(scans);
      return rows.every((r) => r.status === 'completed' || r.status === 'failed') && (await pendingJobs(c.database)) === 0;
    },
    300_000,
    250,
  );
}

test(
  'kill -9 of an API process and of a worker, and a PostgreSQL restart, during a load: nothing accepted is lost or stuck, no webhook under two ids',
  { skip: !(redis && pgBin) && 'needs Redis and the PostgreSQL server binaries', timeout: 900_000 },
  async () => {
    let server: ThrowawayPostgres | null = null;
    let cluster: Cluster | null = null;
    let stopLoad = true;
    let load: Promise<void> | null = null;
    let refusedSeen = new Map<string, number>();
    try {
      server = await startThrowawayPostgres();
      cluster = await startCluster({
        postgresAdminUrl: server.adminUrl,
        // A lost analysis is retried after 8 s, looked for every 2 s: the test's pace, not production's.
        env: { ANALYSIS_TIMEOUT_SECONDS: '8', QUEUE_MAINTENANCE_SECONDS: '2', WORKER_CONCURRENCY: '2' },
      });
      const c = cluster;
      const [apiA, apiB] = await Promise.all([c.startApi('api-a'), c.startApi('api-b')]);
      const [workerA] = await Promise.all([c.startWorker('worker-a'), c.startWorker('worker-b')]);
      const auth = c.doctor.auth;
      const hook = await fetch(`http://127.0.0.1:${apiB.port}/api/webhooks`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ url: c.receiver.url, events: ['scan.uploaded', 'scan.analyzed', 'scan.failed'] }),
      });
      assert.equal(hook.status, 201);

      // The load: three clients uploading in turn to the API processes still alive. Only a 201
      // counts as accepted; refused or cut requests are what a client would retry.
      const live = new Set<Child>([apiA, apiB]);
      const accepted: string[] = [];
      const refused = new Map<string, number>();
      refusedSeen = refused;
      let n = 0;
      stopLoad = false;
      load = Promise.all(
        Array.from({ length: 3 }, async () => {
          while (!stopLoad) {
            const i = n++;
            const targets = [...live];
            const api = targets[i % targets.length]!;
            try {
              const res = await uploadTo(`http://127.0.0.1:${api.port}`, auth, i);
              const text = await res.text();
              if (res.status === 201) accepted.push((JSON.parse(text) as { _id: string })._id);
              else {
                const key = `${res.status} ${text.slice(0, 120)}`;
                refused.set(key, (refused.get(key) ?? 0) + 1);
              }
            } catch {
              refused.set('connection', (refused.get('connection') ?? 0) + 1);
              await new Promise((r) => setTimeout(r, 50));
            }
          }
        }),
      ).then(() => undefined);
      const acceptedAtLeast = (count: number, what: string) => until(what, async () => accepted.length >= count, 180_000, 50);

      await acceptedAtLeast(8, 'the first uploads');
      // 1. An API process dies without warning; the clients move to the other.
      live.delete(apiA);
      apiA.process.kill('SIGKILL');
      await apiA.exited;

      // 2. A worker dies without warning, caught in the middle of an analysis when possible.
      await until('an analysis in progress', async () => {
        const active = await c.database.db.select({ id: analyses.id }).from(analyses).where(inArray(analyses.status, ['active']));
        return active.length > 0;
      }, 60_000, 5).catch(() => undefined);
      workerA.process.kill('SIGKILL');
      await workerA.exited;
      // The replacement is up before the next fault: the faults come one after another.
      await c.startWorker('worker-c');
      await acceptedAtLeast(accepted.length + 8, 'uploads after the kills');

      // 3. PostgreSQL stops abruptly and comes back.
      await server.restart();
      const beforeRecovery = accepted.length;
      await acceptedAtLeast(beforeRecovery + 8, 'uploads after the PostgreSQL restart');
      stopLoad = true;
      await load;

      await waitSettled(c, 'every accepted scan to be analysed');
      const rows = await c.database.db.select({ id: scans.id, status: scans.status, originalKey: scans.originalKey }).from(scans);
      const byId = new Map(rows.map((r) => [r.id, r.status]));
      const context = `accepted ${accepted.length}, refused ${JSON.stringify(Object.fromEntries(refused))}\n${c.report()}`;
      // Nothing accepted is lost...
      assert.deepEqual(accepted.filter((id) => !byId.has(id)), [], `accepted uploads missing\n${context}`);
      const originalKeys = new Map(rows.map((r) => [r.id, r.originalKey]));
      for (const id of accepted.slice(0, 5).concat(accepted.slice(-5))) {
        // An upload stores its original alone (the display image is rendered when first read):
        // a small one in the database with its row, a large one in the bucket.
        assert.ok(await c.storage.exists(originalKeys.get(id)!), `the image of accepted scan ${id} is missing`);
      }
      // ...nothing is stuck, and the analyses cut by the faults were retried, not failed.
      assert.deepEqual(
        rows.filter((r) => r.status !== 'completed').map((r) => `${r.id} ${r.status}`),
        [],
        `scans not completed\n${context}`,
      );
      const analysisRows = await c.database.db.select({ scanId: analyses.scanId, status: analyses.status }).from(analyses);
      assert.equal(analysisRows.length, rows.length, 'one analysis per scan');

      // Webhooks: every accepted scan's events arrive, and one event never under two ids.
      await until(
        'the webhook deliveries of every accepted scan',
        async () => {
          const seen = new Set(c.receiver.deliveries.map((d) => `${d.type} ${d.scanId}`));
          return accepted.every((id) => seen.has(`scan.uploaded ${id}`) && seen.has(`scan.analyzed ${id}`)) && (await pendingJobs(c.database)) === 0;
        },
        120_000,
        250,
      );
      const ids = new Map<string, Set<string>>();
      for (const d of c.receiver.deliveries) {
        const key = `${d.type} ${d.scanId}`;
        ids.set(key, (ids.get(key) ?? new Set()).add(d.webhookId));
      }
      assert.deepEqual(
        [...ids].filter(([, s]) => s.size > 1).map(([k]) => k),
        [],
        'an event was delivered under two webhook-ids',
      );
      assert.ok(accepted.length >= 24);
    } catch (err) {
      // What each process said, and what the clients got, for the failure's message.
      const detail = `refused: ${JSON.stringify(Object.fromEntries(refusedSeen))}\n${cluster?.report() ?? ''}`;
      throw err instanceof Error ? Object.assign(err, { message: `${err.message}\n${detail}` }) : err;
    } finally {
      stopLoad = true;
      await load?.catch(() => undefined);
      await cluster?.close();
      await server?.stop();
    }
  },
);

test(
  'SIGTERM to an API process answers the upload in flight; SIGTERM to a worker finishes the analysis in flight; both exit cleanly',
  { skip: !(redis && postgres) && 'needs Redis and the PostgreSQL server', timeout: 600_000 },
  async () => {
    let cluster: Cluster | null = null;
    try {
      cluster = await startCluster();
      const c = cluster;
      const [api, worker] = await Promise.all([c.startApi('api'), c.startWorker('worker')]);
      const auth = c.doctor.auth;

      // An upload whose body is still arriving when SIGTERM comes.
      const { response, sendRest } = halfSentUpload(api.port!, auth, {
        patientId: 'SIGTERM-1',
        patientName: 'Sigterm Patient',
        scanType: 'brain-mri',
        file: 'brain-glioma-1.jpg',
      });
      // The first half has reached the server when its request is logged.
      await until('the upload to reach the API', async () => api.logs.some((l) => l.msg === 'incoming request' && (l.req as { method?: string } | undefined)?.method === 'POST'), 60_000, 20);
      api.process.kill('SIGTERM');
      await until('the API to begin shutting down', async () => api.logs.some((l) => typeof l.msg === 'string' && l.msg.startsWith('shutting down')), 60_000, 20);
      sendRest();
      const answered = await response;
      assert.equal(answered.status, 201, `the upload in flight was not answered: ${answered.status} ${answered.text}\n${c.report()}`);
      const scanId = (JSON.parse(answered.text) as { _id: string })._id;
      const apiExit = await api.exited;
      assert.deepEqual(apiExit, { code: 0, signal: null }, c.report());

      // The worker: SIGTERM while an analysis is running. Uploads go through a second API.
      const api2 = await c.startApi('api-2');
      let caught: string | null = null;
      for (let round = 0; round < 5 && !caught; round++) {
        const uploads = Promise.all(Array.from({ length: 6 }, (_, i) => uploadTo(`http://127.0.0.1:${api2.port}`, auth, i).then((r) => r.text())));
        caught = await until('an analysis in progress', async () => {
          const [active] = await c.database.db.select({ id: analyses.id }).from(analyses).where(inArray(analyses.status, ['active']));
          return active?.id;
        }, 30_000, 2).catch(() => null);
        await uploads;
      }
      assert.ok(caught, 'no analysis was ever seen running');
      worker.process.kill('SIGTERM');
      const workerExit = await worker.exited;
      assert.deepEqual(workerExit, { code: 0, signal: null }, c.report());
      // The analysis that was running when SIGTERM came finished; none was abandoned midway.
      const after = await c.database.db.select({ id: analyses.id, status: analyses.status, scanId: analyses.scanId }).from(analyses);
      assert.equal(after.find((a) => a.id === caught)?.status, 'completed', c.report());
      assert.deepEqual(after.filter((a) => a.status === 'active'), [], 'an analysis was left running by the stopped worker');
      // The rest is analysed by the next worker, including the upload answered during the API's shutdown.
      await c.startWorker('worker-2');
      await waitSettled(c, 'the remaining analyses');
      const [scan] = await c.database.db.select({ status: scans.status }).from(scans).where(inArray(scans.id, [scanId]));
      assert.equal(scan?.status, 'completed');
      // Nothing went wrong on the way out (e.g. a query on a closed pool).
      for (const child of [api, worker]) {
        const errors = child.logs.filter((l) => typeof l.level === 'number' && l.level >= 50);
        assert.deepEqual(errors, [], `${child.name} logged errors while stopping`);
      }
    } finally {
      await cluster?.close();
    }
  },
);
