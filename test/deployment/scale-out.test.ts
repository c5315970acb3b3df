/**
 * The documented scale-out (docs/deployment.md), as real processes: 2 API processes and 2
 * workers on one PostgreSQL database, Redis for the rate limits, an S3-compatible store
 * (s3rver on loopback). Uploads go through both APIs; every scan must be analysed exactly
 * once, by either worker, and each webhook event delivered once.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { analyses, scans } from '../../src/platform/db/schema.js';
import { scanFileKey } from '../../src/scans/stored-files.js';
import { pendingJobs, reachable, startCluster, until, uploadTo, type Cluster } from '../helpers/cluster.js';

const infra = (await reachable('postgres')) && (await reachable('redis'));

test('2 API processes and 2 workers: every scan uploaded through either API is analysed exactly once', { skip: !infra && 'needs the PostgreSQL server and Redis', timeout: 600_000 }, async () => {
  let cluster: Cluster | null = null;
  try {
    cluster = await startCluster();
    const c = cluster;
    // The sessions LISTENing on each channel: PostgreSQL wakes every one at each notifying commit.
    const listeners = async (channel: string) => {
      const { rows } = await c.database.executor.executeSql(
        `select count(*)::int as n from pg_stat_activity where datname = current_database() and query = $1`,
        [`LISTEN "${channel}"`],
      );
      return (rows[0] as { n: number }).n;
    };
    const [apiA, apiB] = await Promise.all([c.startApi('api-a'), c.startApi('api-b')]);
    // API-only processes work no jobs: they keep their own listeners but not the jobs channel's.
    assert.equal(await listeners('imagemedix_jobs'), 0, 'an API-only process listens on the jobs channel');
    assert.ok((await listeners('imagemedix_users')) >= 2, "the APIs' user listeners");
    const [workerA, workerB] = await Promise.all([c.startWorker('worker-a'), c.startWorker('worker-b')]);
    assert.equal(await listeners('imagemedix_jobs'), 2, 'one jobs listener per worker');
    const bases = [apiA, apiB].map((a) => `http://127.0.0.1:${a.port}`);
    const auth = c.doctor.auth;

    // The rate limit is one budget across the APIs (Redis), not one per process.
    const remaining = async (base: string) =>
      Number((await fetch(`${base}/api/auth/me`, { headers: auth })).headers.get('x-ratelimit-remaining'));
    const first = await remaining(bases[0]!);
    assert.equal(await remaining(bases[1]!), first - 1, 'the second API did not see the first one\'s request');

    const hook = await fetch(`${bases[1]}/api/webhooks`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ url: c.receiver.url, events: ['scan.uploaded', 'scan.analyzed', 'scan.failed'] }),
    });
    assert.equal(hook.status, 201, await hook.clone().text());

    const N = 24;
    const ids: string[] = [];
    let next = 0;
    // Four clients at a time, alternating between the two APIs.
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let i = next++; i < N; i = next++) {
          const res = await uploadTo(bases[i % 2]!, auth, i);
          const text = await res.text();
          assert.equal(res.status, 201, `upload ${i} through ${i % 2 ? 'api-b' : 'api-a'}: ${text}`);
          const body = JSON.parse(text) as { _id: string; status: string };
          assert.equal(body.status, 'processing');
          ids.push(body._id);
        }
      }),
    );

    await until(
      'every scan to be analysed',
      async () => {
        const rows = await c.database.db.select({ status: scans.status }).from(scans);
        return rows.length === N && rows.every((r) => r.status === 'completed' || r.status === 'failed');
      },
      240_000,
      200,
    );
    const scanRows = await c.database.db.select({ id: scans.id, status: scans.status, currentAnalysisId: scans.currentAnalysisId }).from(scans);
    assert.deepEqual(scanRows.map((s) => s.status), Array(N).fill('completed'), c.report());

    // One analysis per scan, and one "analysis finished" per scan in the workers' logs: no
    // scan was analysed by both workers (or twice by one).
    const analysisRows = await c.database.db.select({ id: analyses.id, scanId: analyses.scanId, status: analyses.status }).from(analyses);
    assert.equal(analysisRows.length, N);
    assert.deepEqual(new Set(analysisRows.map((a) => a.scanId)), new Set(ids));
    // A worker writes its line after the commit that the poll above saw, through a pipe: wait
    // for the lines (up to 10 s), then count them exactly.
    const finishedLines = () => [workerA, workerB].map((w) => w.logs.filter((l) => l.msg === 'analysis finished'));
    await until('every "analysis finished" line', async () => finishedLines().flat().length >= N, 10_000).catch(() => undefined);
    const finished = finishedLines();
    const finishedScans = finished.flat().map((l) => l.scanId as string);
    assert.equal(finishedScans.length, N, `analyses finished: ${finishedScans.length}\n${c.report()}`);
    assert.deepEqual(new Set(finishedScans), new Set(ids));
    // Both workers took part: the jobs are shared, not all taken by the first one listening.
    assert.ok(finished[0]!.length > 0 && finished[1]!.length > 0, `worker-a ${finished[0]!.length}, worker-b ${finished[1]!.length}`);

    // The files are in the shared store, where either API can serve them. A JPEG's display
    // image is rendered by its first reader (here api-a) and stored there: api-b reads those bytes.
    // A heatmap is drawn on its first read too: here both APIs are asked for it at once, and
    // both answer the bytes stored.
    for (const s of scanRows.slice(0, 4)) {
      const heatmapKey = scanFileKey(s.id, `heatmap-${s.currentAnalysisId}.png`);
      assert.equal(await c.storage.exists(heatmapKey), false, 'no heatmap drawn before it is read');
      assert.equal(await c.storage.exists(scanFileKey(s.id, 'image.png')), false, 'nothing rendered before it is read');
      const heatmaps = await Promise.all(
        bases.map(async (base) => {
          const detail = await fetch(`${base}/api/scans/${s.id}`, { headers: auth });
          const { result } = (await detail.json()) as { result: { heatmapUrl: string } };
          const heatmap = await fetch(new URL(result.heatmapUrl, base));
          assert.equal(heatmap.status, 200);
          assert.equal(heatmap.headers.get('content-type'), 'image/png');
          return Buffer.from(await heatmap.arrayBuffer());
        }),
      );
      assert.ok(heatmaps[1]!.equals(heatmaps[0]!));
      assert.ok((await c.storage.get(heatmapKey)).equals(heatmaps[0]!));
      const served: Buffer[] = [];
      for (const base of bases) {
        const detail = await fetch(`${base}/api/scans/${s.id}`, { headers: auth });
        const { imageUrl } = (await detail.json()) as { imageUrl: string };
        const image = await fetch(new URL(imageUrl, base));
        assert.equal(image.status, 200);
        assert.equal(image.headers.get('content-type'), 'image/png');
        served.push(Buffer.from(await image.arrayBuffer()));
      }
      assert.ok(served[1]!.equals(served[0]!));
      assert.ok((await c.storage.get(scanFileKey(s.id, 'image.png'))).equals(served[0]!));
      assert.ok(await c.storage.exists(scanFileKey(s.id, 'thumb.png')));
    }

    // Webhooks: scan.uploaded and scan.analyzed once per scan, each with its own webhook-id.
    await until('the webhook deliveries', async () => c.receiver.deliveries.length >= 2 * N && (await pendingJobs(c.database)) === 0, 120_000, 200);
    const byEvent = new Map<string, number>();
    for (const d of c.receiver.deliveries) byEvent.set(`${d.type} ${d.scanId}`, (byEvent.get(`${d.type} ${d.scanId}`) ?? 0) + 1);
    const expected = new Map(ids.flatMap((id) => [[`scan.uploaded ${id}`, 1] as const, [`scan.analyzed ${id}`, 1] as const]));
    assert.deepEqual(byEvent, expected);
    assert.equal(new Set(c.receiver.deliveries.map((d) => d.webhookId)).size, 2 * N);
  } finally {
    await cluster?.close();
  }
});
