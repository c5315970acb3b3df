/**
 * The asynchronous life of a scan, end to end with the real models: upload -> queued ->
 * worker -> completed with a finding and a heatmap; progress; re-analysis history;
 * de-duplication; a worker killed mid-job; webhooks for the three events.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { Webhook } from 'standardwebhooks';
import { createOnnxAnalyzer, type OnnxAnalyzer } from './analyzer.js';
import type { Analyzer } from './analyze.job.js';
import { REPO_ROOT } from '../platform/config.js';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { captureLog } from '../../test/helpers/log-capture.js';
import { multipart } from '../../test/helpers/multipart.js';

const fixture = (name: string) => readFileSync(path.join(REPO_ROOT, 'test/fixtures/images', name));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function upload(t: TestApp, user: TestUser, file: Buffer, fields: Record<string, string> = {}) {
  const body = multipart({
    image: { filename: 'scan.jpg', contentType: 'image/jpeg', data: file },
    patientId: fields.patientId ?? uniqueId(),
    patientName: fields.patientName ?? 'Pipeline Patient',
    ...fields,
  });
  const res = await t.app.inject({ method: 'POST', url: '/api/scans', ...body, headers: { ...body.headers, ...user.auth } });
  assert.equal(res.statusCode, 201, res.body);
  return res.json<{ _id: string; status: string; patientId: string }>();
}

async function waitForScan(t: TestApp, user: TestUser, id: string, done = ['completed', 'failed'], timeoutMs = 60_000) {
  const start = Date.now();
  for (;;) {
    const res = await t.app.inject({ url: `/api/scans/${id}`, headers: user.auth });
    const scan = res.json();
    if (done.includes(scan.status)) return scan;
    if (Date.now() - start > timeoutMs) throw new Error(`scan ${id} still ${scan.status} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

/** A colour photograph stand-in: smooth colour gradients and shapes, nothing like an MRI. */
async function photo(): Promise<Buffer> {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="320" height="240">
    <defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="#3a8ee6"/><stop offset="1" stop-color="#f6d365"/></linearGradient></defs>
    <rect width="320" height="240" fill="url(#g)"/><circle cx="220" cy="90" r="40" fill="#e63946"/>
    <rect x="30" y="150" width="140" height="60" fill="#2a9d8f"/></svg>`;
  return sharp(Buffer.from(svg)).jpeg().toBuffer();
}

for (const kind of await databaseKinds()) {
  describe(`analysis pipeline (${kind})`, () => {
    let t: TestApp;
    let doc: TestUser;
    let receiver: Server;
    const received: { type: string; data: Record<string, unknown>; headers: Record<string, unknown> }[] = [];
    let secret = '';
    let stagesSeen: string[] = [];
    let real: OnnxAnalyzer;

    before(async () => {
      real = createOnnxAnalyzer({ modelsDir: path.join(REPO_ROOT, 'models'), threads: 2 });
      // The real models; each stage is slowed a little so a poller can watch progress move.
      const observed: Analyzer = {
        analyze: (scanType, png, onStage) =>
          real.analyze(scanType, png, async (stage) => {
            stagesSeen.push(stage);
            await onStage(stage);
            await sleep(150);
          }),
      };
      t = await createTestApp(kind, { worker: true, analyzer: observed });
      doc = await t.user();
      receiver = createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = Buffer.concat(chunks).toString();
          try {
            const payload = new Webhook(secret).verify(body, req.headers as Record<string, string>) as {
              type: string;
              data: Record<string, unknown>;
            };
            received.push({ type: payload.type, data: payload.data, headers: req.headers });
            res.writeHead(204).end();
          } catch {
            res.writeHead(400).end();
          }
        });
      });
      await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
      const port = (receiver.address() as { port: number }).port;
      const hook = await t.app.inject({
        method: 'POST',
        url: '/api/webhooks',
        headers: doc.auth,
        payload: { url: `http://127.0.0.1:${port}/hook`, events: ['scan.uploaded', 'scan.analyzed', 'scan.failed'] },
      });
      assert.equal(hook.statusCode, 201, hook.body);
      secret = hook.json().secret;
    });
    after(async () => {
      await t.close();
      await real.close();
      receiver.close();
    });

    test('an upload is analysed by the real model; progress only moves forward', async () => {
      stagesSeen = [];
      const scan = await upload(t, doc, fixture('brain-glioma-1.jpg'), { scanType: 'brain-mri' });
      assert.equal(scan.status, 'processing');
      const progress: number[] = [];
      for (let i = 0; i < 400; i++) {
        const s = (await t.app.inject({ url: `/api/scans/${scan._id}/status`, headers: doc.auth })).json();
        if (s.jobStatus) progress.push(s.jobStatus.progress);
        if (s.status === 'completed' || s.status === 'failed') break;
        await sleep(25);
      }
      assert.deepEqual(progress, [...progress].sort((a, b) => a - b), `progress went backwards: ${progress.join(',')}`);
      assert.equal(progress.at(-1), 100);
      assert.ok(new Set(progress).size >= 3, `expected to see several stages, saw ${[...new Set(progress)].join(',')}`);
      assert.deepEqual(stagesSeen, ['preprocess', 'inference', 'explanation']);

      const done = await waitForScan(t, doc, scan._id);
      assert.equal(done.status, 'completed');
      assert.equal(done.result.hasTumor, true);
      assert.equal(done.result.tumorType, 'glioma');
      assert.ok(done.result.confidence > 0.5 && done.result.confidence <= 1);
      assert.equal(done.result.model.id, 'brain-mri');
      assert.match(done.result.tumorLocation, /pproximate/);
      const heat = await t.app.inject({ url: done.result.heatmapUrl.replace(/^https?:\/\/[^/]+/, '') });
      assert.equal(heat.statusCode, 200);
      assert.equal(heat.headers['content-type'], 'image/png');
      const status = (await t.app.inject({ url: `/api/scans/${scan._id}/status`, headers: doc.auth })).json();
      assert.equal(status.status, 'completed');
      assert.equal(status.jobStatus.state, 'completed');
      assert.equal(status.jobStatus.progress, 100);
      const ml = (await t.app.inject({ url: `/api/ml/status/${scan._id}`, headers: doc.auth })).json();
      assert.equal(ml.status, 'completed');
      assert.equal(ml.progress, 100);
      assert.equal(ml.estimatedCompletionTime, null);
    });

    test('a chest X-ray gets the chest model; a photo is refused with a reason', async () => {
      const chest = await upload(t, doc, fixture('chest-bacterial-1.jpeg'), { scanType: 'chest-xray' });
      const done = await waitForScan(t, doc, chest._id);
      assert.equal(done.status, 'completed');
      assert.equal(done.result.hasPneumonia, true);
      assert.ok(['bacterial', 'viral'].includes(done.result.pneumoniaType));
      assert.equal(done.result.model.id, 'chest-xray');

      const refused = await upload(t, doc, await photo(), { scanType: 'brain-mri' });
      const failed = await waitForScan(t, doc, refused._id);
      assert.equal(failed.status, 'failed');
      assert.ok(failed.failureReason && failed.failureReason.length > 10, 'a refusal says why');
      assert.equal(failed.result, null);
    });

    test('without a scan type, as the API document uploads, the image decides which model analyses it', async () => {
      const brain = await upload(t, doc, fixture('brain-notumor-1.jpg'));
      const chest = await upload(t, doc, fixture('chest-bacterial-1.jpeg'));
      assert.equal(brain.status, 'processing');
      assert.equal(chest.status, 'processing');
      const brainDone = await waitForScan(t, doc, brain._id);
      assert.equal(brainDone.status, 'completed', brainDone.failureReason);
      assert.equal(brainDone.scanType, 'brain-mri');
      assert.equal(brainDone.result.hasTumor, false);
      assert.equal(brainDone.result.routing.source, 'image');
      assert.equal(brainDone.result.model.id, 'brain-mri');
      const chestDone = await waitForScan(t, doc, chest._id);
      assert.equal(chestDone.status, 'completed', chestDone.failureReason);
      assert.equal(chestDone.scanType, 'chest-xray');
      assert.equal(chestDone.result.hasPneumonia, true);
      assert.equal(chestDone.result.model.id, 'chest-xray');
      assert.equal(chestDone.result.operatingPoint, 'general', 'the manifest default');
    });

    // Sent without a type, most chest X-rays turned 90 degrees went to the brain model, which
    // answered a few of them as brain MRIs (docs/models/README.md, "Orientation").
    test('a chest X-ray turned 90 degrees, sent without a type, is refused as turned, not answered as a brain MRI', async () => {
      const turned = await sharp(fixture('chest-normal-1.jpeg')).rotate(90).jpeg().toBuffer();
      const scan = await upload(t, doc, turned);
      assert.equal(scan.status, 'processing');
      const done = await waitForScan(t, doc, scan._id);
      assert.equal(done.status, 'failed');
      assert.match(done.failureReason, /^The image looks like a chest X-ray rotated 90 degrees clockwise \(its top is on the right\): .*Upload the chest X-ray upright\./);
      assert.equal(done.scanType, 'chest-xray');
      assert.equal(done.result, null, 'no diagnosis');
    });

    test('an image that is neither a brain MRI nor a chest X-ray is refused with a reason, not left pending', async () => {
      const scan = await upload(t, doc, await photo());
      assert.equal(scan.status, 'processing');
      const done = await waitForScan(t, doc, scan._id);
      assert.equal(done.status, 'failed');
      assert.equal(done.scanType, null, 'the type stays unknown');
      assert.match(done.failureReason, /not recognised as a brain MRI or a chest X-ray/);
      assert.equal(done.result, null);
    });

    test('a declared type the image contradicts is refused, naming both', async () => {
      const scan = await upload(t, doc, fixture('chest-normal-1.jpeg'), { scanType: 'brain-mri' });
      const done = await waitForScan(t, doc, scan._id);
      assert.equal(done.status, 'failed');
      assert.match(done.failureReason, /looks like a chest X-ray .*declared a brain MRI/);
      assert.equal(done.result, null);

      // The refused declaration may be corrected through the right route; the image decides.
      const corrected = await t.app.inject({ method: 'POST', url: '/api/ml/chest/analyze', headers: doc.auth, payload: { scanId: scan._id } });
      assert.equal(corrected.statusCode, 200, corrected.body);
      const fixed = await waitForScan(t, doc, scan._id);
      assert.equal(fixed.status, 'completed');
      assert.equal(fixed.scanType, 'chest-xray');

      // Once analysed as its type, a scan keeps it: the other route is a conflict (issue 11).
      const typed = await upload(t, doc, fixture('brain-glioma-1.jpg'), { scanType: 'brain-mri' });
      await waitForScan(t, doc, typed._id);
      const res = await t.app.inject({ method: 'POST', url: '/api/ml/chest/analyze', headers: doc.auth, payload: { scanId: typed._id } });
      assert.equal(res.statusCode, 409, res.body);
      assert.match(res.json().error, /brain-mri scan and cannot be analysed as chest-xray/);
    });

    test('re-analysis keeps the earlier result in the history', async () => {
      const scan = await upload(t, doc, fixture('brain-glioma-1.jpg'), { scanType: 'brain-mri' });
      const first = await waitForScan(t, doc, scan._id);
      const again = await t.app.inject({ method: 'POST', url: '/api/ml/brain/analyze', headers: doc.auth, payload: { scanId: scan._id } });
      assert.equal(again.statusCode, 200);
      await sleep(50);
      const second = await waitForScan(t, doc, scan._id);
      assert.equal(second.status, 'completed');
      assert.equal(second.analysisHistory.length, 2);
      assert.notEqual(second.analysisHistory[0]._id, second.analysisHistory[1]._id);
      assert.deepEqual(
        second.analysisHistory.map((a: { status: string }) => a.status),
        ['completed', 'completed'],
      );
      assert.equal(first.result.tumorType, second.result.tumorType, 'the same model gives the same answer');
    });

    test('ML endpoints: access rules and errors', async () => {
      const other = await t.user();
      const scan = await upload(t, doc, fixture('brain-notumor-1.jpg'));
      const cases: [TestUser | null, string, string, unknown, number][] = [
        [other, 'POST', '/api/ml/brain/analyze', { scanId: scan._id }, 404],
        [other, 'GET', `/api/ml/status/${scan._id}`, undefined, 404],
        [null, 'POST', '/api/ml/chest/analyze', { scanId: scan._id }, 401],
        [null, 'GET', '/api/ml/models', undefined, 401],
        [doc, 'POST', '/api/ml/brain/analyze', {}, 400],
        [doc, 'POST', '/api/ml/brain/analyze', { scanId: '00000000-0000-4000-8000-000000000000' }, 404],
        [doc, 'GET', '/api/ml/status/not-a-scan', undefined, 404],
      ];
      for (const [user, method, url, payload, code] of cases) {
        const res = await t.app.inject({
          method: method as 'GET',
          url,
          payload: payload as Record<string, unknown> | undefined,
          headers: user ? user.auth : {},
        });
        assert.equal(res.statusCode, code, `${method} ${url}: ${res.body}`);
        assert.ok(res.json().error);
      }
      const models = (await t.app.inject({ url: '/api/ml/models', headers: doc.auth })).json().models;
      assert.deepEqual(models.map((m: { id: string }) => m.id).sort(), ['brain-mri', 'chest-xray']);
      const brain = models.find((m: { id: string }) => m.id === 'brain-mri');
      assert.deepEqual(brain.labels, ['glioma', 'meningioma', 'notumor', 'pituitary']);
      assert.ok(brain.metrics.accuracy > 0.5);
      const chest = models.find((m: { id: string }) => m.id === 'chest-xray');
      assert.equal(chest.calibration, 'model');
      assert.equal(chest.operatingPoint, 'general', 'the manifest default');
      const names = chest.operatingPoints.map((p: { name: string }) => p.name);
      assert.deepEqual(names, ['screening', 'general', 'balanced']);
    });

    test('webhooks: the receiver verified scan.uploaded, scan.analyzed and scan.failed', async () => {
      for (let i = 0; i < 100 && !['scan.uploaded', 'scan.analyzed', 'scan.failed'].every((e) => received.some((r) => r.type === e)); i++) {
        await sleep(100);
      }
      const types = new Set(received.map((r) => r.type));
      assert.deepEqual([...types].sort(), ['scan.analyzed', 'scan.failed', 'scan.uploaded']);
      for (const r of received) {
        assert.deepEqual(Object.keys(r.data).sort(), ['patientId', 'scanId', 'status']);
        assert.match(String(r.headers['webhook-signature']), /^v1,/);
      }
    });
  });
}

for (const kind of await databaseKinds()) describe(`analysis queue without a worker (${kind})`, () => {
  test('concurrent analyze requests for one scan share one job; another model is refused with 409', async () => {
    const t = await createTestApp(kind);
    try {
      const doc = await t.user();
      // Uploaded with its type, so the upload's own analysis is the one the requests find.
      const scan = await upload(t, doc, fixture('brain-notumor-1.jpg'), { scanType: 'brain-mri' });
      const requests = await Promise.all(
        Array.from({ length: 4 }, () =>
          t.app.inject({ method: 'POST', url: '/api/ml/brain/analyze', headers: doc.auth, payload: { scanId: scan._id } }),
        ),
      );
      const ids = requests.map((r) => r.json().jobId);
      assert.equal(new Set(ids).size, 1, `expected one job, got ${ids.join(',')}`);
      assert.ok(requests.every((r) => r.json().deduplicated === true), 'they join the upload\'s queued analysis');
      const status = (await t.app.inject({ url: `/api/scans/${scan._id}/status`, headers: doc.auth })).json();
      assert.equal(status.status, 'processing');
      assert.equal(status.jobStatus.state, 'waiting');
      const ml = (await t.app.inject({ url: `/api/ml/status/${scan._id}`, headers: doc.auth })).json();
      assert.match(ml.estimatedCompletionTime, /^\d+ (seconds?|minutes|hours)$/);
      // The queued analysis is a brain one: asking for the chest model meanwhile is a conflict.
      const chest = await t.app.inject({ method: 'POST', url: '/api/ml/chest/analyze', headers: doc.auth, payload: { scanId: scan._id } });
      assert.equal(chest.statusCode, 409, chest.body);
      assert.match(chest.json().error, /already being analysed as brain-mri/);
    } finally {
      await t.close();
    }
  });
});

describe('operating point and site calibration, as deployed', () => {
  test('CHEST_OPERATING_POINT picks the point the result names; a site calibration is used and listed as "site"', async () => {
    const [kind] = await databaseKinds();
    const calibrationDir = mkdtempSync(path.join(tmpdir(), 'imagemedix-site-'));
    const manifest = JSON.parse(readFileSync(path.join(REPO_ROOT, 'models/chest-xray.json'), 'utf8'));
    writeFileSync(
      path.join(calibrationDir, 'chest-xray.site.json'),
      JSON.stringify({
        model: { id: 'chest-xray', version: manifest.version, sha256: manifest.sha256 },
        temperature: 1.3,
        operatingPoints: { balanced: { threshold: 0.999 } },
        data: { dir: '/site', counts: { normal: 100, bacterial: 50, viral: 50 } },
        date: new Date().toISOString(),
      }),
    );
    const t = await createTestApp(kind!, { worker: true, env: { CHEST_OPERATING_POINT: 'balanced', CALIBRATION_DIR: calibrationDir } });
    try {
      const doc = await t.user();
      const listed = (await t.app.inject({ url: '/api/ml/models', headers: doc.auth })).json().models;
      const chest = listed.find((m: { id: string }) => m.id === 'chest-xray');
      assert.deepEqual([chest.calibration, chest.operatingPoint, chest.temperature], ['site', 'balanced', 1.3]);
      const scan = await upload(t, doc, fixture('chest-bacterial-1.jpeg'), { scanType: 'chest-xray' });
      const done = await waitForScan(t, doc, scan._id);
      assert.equal(done.status, 'completed', done.failureReason);
      assert.equal(done.result.operatingPoint, 'balanced');
      assert.equal(done.result.calibration, 'site');
      assert.equal(done.result.decisionThreshold, 0.999);
    } finally {
      await t.close();
      rmSync(calibrationDir, { recursive: true, force: true });
    }
  });
});

describe('a site calibration written before chest 2.0.0 had `general`, as deployed', () => {
  test('the API starts serving the manifest calibration at the default point, lists "model", and logs a warning naming the file and the command that regenerates it', async () => {
    const [kind] = await databaseKinds();
    const calibrationDir = mkdtempSync(path.join(tmpdir(), 'imagemedix-site-'));
    const manifest = JSON.parse(readFileSync(path.join(REPO_ROOT, 'models/chest-xray.json'), 'utf8'));
    const file = path.join(calibrationDir, 'chest-xray.site.json');
    const command = 'npm run calibrate -- --model chest-xray --data /srv/site-images';
    writeFileSync(
      file,
      JSON.stringify({
        model: { id: 'chest-xray', version: manifest.version, sha256: manifest.sha256 },
        temperature: 1.3,
        operatingPoints: { screening: { threshold: 0.2 }, balanced: { threshold: 0.9 } },
        data: { dir: '/srv/site-images', counts: { normal: 100, bacterial: 50, viral: 50 } },
        command,
        date: '2026-11-20T09:00:00.000Z',
      }),
    );
    const captured = captureLog('warn');
    const t = await createTestApp(kind!, { log: captured.log, env: { CALIBRATION_DIR: calibrationDir } });
    try {
      const warning = captured.entries().find((e) => e.model === 'chest-xray');
      assert.ok(warning, captured.text());
      assert.equal(warning.level, 40);
      const msg = String(warning.msg);
      assert.ok(msg.includes(file) && msg.includes(command) && msg.includes('"general"'), msg);
      const doc = await t.user();
      const chest = (await t.app.inject({ url: '/api/ml/models', headers: doc.auth })).json().models.find((m: { id: string }) => m.id === 'chest-xray');
      assert.deepEqual([chest.calibration, chest.operatingPoint, chest.temperature], ['model', 'general', manifest.calibration.temperature]);
      assert.equal(chest.operatingPoints.find((p: { name: string }) => p.name === 'general').threshold, manifest.decision.operatingPoints.general.threshold);
    } finally {
      await t.close();
      rmSync(calibrationDir, { recursive: true, force: true });
    }
  });
});

describe('a site calibration fitted on the model file before an update (chest 2.0.0 -> 2.1.0), as deployed', () => {
  test('the API starts with the manifest calibration, lists "model", and logs a warning naming the file, both model files and the command that refits it', async () => {
    const [kind] = await databaseKinds();
    const calibrationDir = mkdtempSync(path.join(tmpdir(), 'imagemedix-site-'));
    const manifest = JSON.parse(readFileSync(path.join(REPO_ROOT, 'models/chest-xray.json'), 'utf8'));
    const file = path.join(calibrationDir, 'chest-xray.site.json');
    writeFileSync(
      file,
      JSON.stringify({
        model: { id: 'chest-xray', version: '2.0.0', sha256: '7d3404e48aba'.padEnd(64, '0') },
        temperature: 1.3,
        operatingPoints: { general: { threshold: 0.4 }, screening: { threshold: 0.2 }, balanced: { threshold: 0.9 } },
        data: { dir: '/srv/site-images', counts: { normal: 100, bacterial: 50, viral: 50 } },
        command: 'npm run calibrate -- --model chest-xray --data /srv/site-images',
        date: '2026-11-20T09:00:00.000Z',
      }),
    );
    const captured = captureLog('warn');
    const t = await createTestApp(kind!, { log: captured.log, env: { CALIBRATION_DIR: calibrationDir } });
    try {
      const warnings = captured.entries().filter((e) => e.model === 'chest-xray');
      assert.equal(warnings.length, 1, captured.text());
      assert.equal(warnings[0]!.level, 40);
      const msg = String(warnings[0]!.msg);
      assert.ok(msg.includes(file), msg);
      assert.ok(msg.includes(`chest-xray 2.0.0 (sha256 7d3404e48aba...)`) && msg.includes(`chest-xray ${manifest.version} (sha256 ${manifest.sha256.slice(0, 12)}...)`), msg);
      assert.ok(msg.includes('`npm run calibrate -- --model chest-xray --data /srv/site-images`'), msg);
      const doc = await t.user();
      const chest = (await t.app.inject({ url: '/api/ml/models', headers: doc.auth })).json().models.find((m: { id: string }) => m.id === 'chest-xray');
      assert.deepEqual([chest.calibration, chest.temperature], ['model', manifest.calibration.temperature]);
    } finally {
      await t.close();
      rmSync(calibrationDir, { recursive: true, force: true });
    }
  });
});

describe('a worker killed mid-job (postgres)', async () => {
  const kinds = await databaseKinds();
  test('the job is retried after its expiry and the scan completes', { skip: !kinds.includes('postgres') }, async () => {
    const t = await createTestApp('postgres', { analysisExpireInSeconds: 3 });
    let child: ReturnType<typeof spawn> | null = null;
    try {
      const doc = await t.user();
      // A separate worker process that stalls during inference...
      child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/helpers/stalling-worker.ts')], {
        env: {
          ...process.env,
          DATABASE_URL: t.database.connectionString!,
          DATA_DIR: t.dataDir,
          JWT_SECRET: 'x'.repeat(40),
          WORKER_CONCURRENCY: '1',
          LOG_LEVEL: 'silent',
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      await new Promise<void>((resolve, reject) => {
        child!.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
        child!.on('exit', (code) => reject(new Error(`worker exited early (${code})`)));
      });
      const scan = await upload(t, doc, fixture('brain-glioma-1.jpg'), { scanType: 'brain-mri' });
      for (let i = 0; ; i++) {
        const s = (await t.app.inject({ url: `/api/scans/${scan._id}/status`, headers: doc.auth })).json();
        if (s.jobStatus?.state === 'active' && s.jobStatus.progress >= 50) break;
        if (i > 300) throw new Error('the stalling worker never picked the job up');
        await sleep(100);
      }
      // ...is killed without warning while the job is active.
      child.kill('SIGKILL');
      await new Promise((r) => child!.once('exit', r));
      child = null;
      // A healthy worker with maintenance on takes over once the job expires.
      const t2Runtime = await (await import('../runtime.js')).createRuntime(t.config, t.database, {
        log: (await import('pino')).pino({ level: 'silent' }),
        analysisExpireInSeconds: 3,
        maintenanceIntervalSeconds: 1,
      });
      await t2Runtime.startWorkers();
      try {
        const done = await waitForScan(t, doc, scan._id, ['completed', 'failed'], 90_000);
        assert.equal(done.status, 'completed');
        assert.equal(done.result.tumorType, 'glioma');
      } finally {
        await t2Runtime.stop();
      }
    } finally {
      child?.kill('SIGKILL');
      await t.close();
    }
  });
});
