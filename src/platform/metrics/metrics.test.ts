import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import sharp from 'sharp';
import { analyzeScanJob } from '../../analysis/analyze.job.js';
import { latestAnalysisOf } from '../../analysis/repository.js';
import { uploadRequest } from '../../scans/test-support.js';
import { createTestApp, type TestApp, type TestUser } from '../../../test/helpers/app.js';
import { databaseKinds } from '../../../test/helpers/db.js';

const TOKEN = 'metrics-token-for-the-tests-0123456789';

async function jpeg(): Promise<Buffer> {
  return sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 90, g: 90, b: 90 } } })
    .jpeg()
    .toBuffer();
}

/** The value of one series in the Prometheus text, or null when it is absent. */
function sample(text: string, series: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : null;
}

describe('metrics are off unless METRICS_TOKEN is set', () => {
  test('GET /metrics is 404 by default', async () => {
    const t = await createTestApp('pglite');
    try {
      const res = await t.app.inject({ method: 'GET', url: '/metrics' });
      assert.equal(res.statusCode, 404);
    } finally {
      await t.close();
    }
  });

  test('METRICS_TOKEN shorter than 16 characters stops start-up', async () => {
    await assert.rejects(createTestApp('pglite', { env: { METRICS_TOKEN: 'short' } }), /METRICS_TOKEN must be at least 16/);
  });
});

for (const kind of await databaseKinds()) {
  describe(`metrics (${kind})`, () => {
    let t: TestApp;
    let doctor: TestUser;
    const scrape = async () => {
      const res = await t.app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } });
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /text\/plain/);
      return res.body;
    };

    before(async () => {
      t = await createTestApp(kind, { env: { METRICS_TOKEN: TOKEN } });
      doctor = await t.user();
    });
    after(() => t.close());

    test('without the token, or with another one, /metrics answers 401', async () => {
      for (const headers of [{}, { authorization: 'Bearer not-the-metrics-token-0000' }, { authorization: doctor.auth.authorization }]) {
        const res = await t.app.inject({ method: 'GET', url: '/metrics', headers });
        assert.equal(res.statusCode, 401);
        assert.match(res.json<{ error: string }>().error, /METRICS_TOKEN/);
      }
    });

    test('request latency by route pattern, never by URL with ids', async () => {
      await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: doctor.auth });
      await t.app.inject({ method: 'GET', url: '/api/scans/00000000-0000-4000-8000-000000000000', headers: doctor.auth });
      const text = await scrape();
      assert.ok(
        (sample(text, 'imagemedix_http_request_duration_seconds_count{method="GET",route="/api/auth/me",status_code="200"}') ?? 0) >= 1,
      );
      assert.equal(
        sample(text, 'imagemedix_http_request_duration_seconds_count{method="GET",route="/api/scans/:id",status_code="404"}'),
        1,
      );
      assert.doesNotMatch(text, /00000000-0000-4000-8000-000000000000/);
    });

    test('queue depth and age of the oldest waiting job; analysis duration by model and refusals', async () => {
      const res = await t.app.inject(
        uploadRequest(doctor, { data: await jpeg(), fields: { patientId: `MET-${Date.now()}`, patientName: 'Metrics Patient', scanType: 'brain-mri' } }),
      );
      assert.equal(res.statusCode, 201);
      const scanId = res.json<{ _id: string }>()._id;
      let text = await scrape();
      assert.equal(sample(text, 'imagemedix_queue_jobs{queue="analyze-scan",state="created"}'), 1);
      assert.ok((sample(text, 'imagemedix_queue_oldest_job_age_seconds{queue="analyze-scan",state="created"}') ?? -1) >= 0);

      // The job's handler as the worker runs it, with a model that refuses the image.
      const job = analyzeScanJob({
        db: t.ctx.db,
        events: t.ctx.events,
        metrics: t.ctx.metrics,
        renditions: t.ctx.renditions,
        analyzer: {
          async analyze(_type, _png, onStage) {
            await onStage('inference');
            return { refused: true, reason: 'not a brain MRI', model: { id: 'brain-mri', version: '1.0.0' } };
          },
        },
      });
      const analysis = await latestAnalysisOf(t.ctx.db, scanId);
      const lines: Record<string, unknown>[] = [];
      const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
      await job.handler({ scanId, analysisId: analysis!.id }, { jobId: 'j', attempt: 1, enqueuedAt: new Date(Date.now() - 50), log });
      text = await scrape();
      assert.equal(sample(text, 'imagemedix_analysis_refusals_total{scan_type="brain-mri"}'), 1);
      assert.equal(sample(text, 'imagemedix_analysis_duration_seconds_count{model="brain-mri",outcome="refused"}'), 1);

      // One structured line per analysis: ids, outcome and timings, and no patient data.
      const finished = lines.filter((l) => l.msg === 'analysis finished');
      assert.equal(finished.length, 1);
      const line = finished[0]!;
      assert.equal(line.scanId, scanId);
      assert.equal(line.outcome, 'refused');
      const timings = line.timings as Record<string, number>;
      assert.ok(timings.queuedMs! >= 50 && timings.totalMs! >= 0, JSON.stringify(timings));
      assert.doesNotMatch(JSON.stringify(line), /Metrics Patient|MET-/);
    });
  });
}
