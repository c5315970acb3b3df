/**
 * An analysis keeps its heatmap's map and stores no PNG; the first read of the heatmap link (or
 * the first report) draws it over the display image and stores it. What a reader gets is the PNG
 * the analysis used to store, byte for byte; an analysis from before (a stored PNG, no map) is
 * served as it is; the link keeps its access rules and its errors.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { gliomaOutput } from '../../test/helpers/analyzer-output.js';
import { createOnnxAnalyzer } from '../analysis/analyzer.js';
import { decodeDisplayPixels, decodeOriginalPixels } from '../imaging/index.js';
import { dicomFixture } from '../imaging/testing/paths.js';
import { pngPixels } from '../imaging/testing/png.js';
import { analyzeScan } from '../ml/inference.js';
import { ModelRegistry } from '../ml/registry.js';
import { REPO_ROOT } from '../platform/config.js';
import { analyses } from '../platform/db/schema.js';
import type { ScanImage } from './renditions.js';
import { confirmHeaderPatient, FIXTURES, heatmapMap, localPath, runAnalysis, uploadRequest } from './test-support.js';

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));
const CHEST_PNG = readFileSync(path.join(FIXTURES, 'images/chest-bacterial-1.jpeg'));
const MODELS = path.join(REPO_ROOT, 'models');

describe('heatmaps drawn on their first read', () => {
  let t: TestApp;
  let doctor: TestUser;
  let other: TestUser;
  before(async () => {
    // Originals in the file store, whose files these tests look at and remove (small originals
    // kept in the database are read the same way: originals.test.ts).
    t = await createTestApp('pglite', { env: { ORIGINALS_IN_DATABASE_MAX_KB: '0' } });
    [doctor, other] = await Promise.all([t.user(), t.user()]);
  });
  after(() => t.close());

  const upload = async (data: Buffer, filename = 'scan.jpg', contentType = 'image/jpeg') => {
    const res = await t.app.inject(
      uploadRequest(doctor, { data, filename, contentType, fields: { patientId: uniqueId(), patientName: 'Ana Lima', ...(await confirmHeaderPatient(data)) } }),
    );
    assert.equal(res.statusCode, 201, res.body);
    return res.json<{ _id: string }>();
  };
  const detailOf = async (scanId: string) => (await t.app.inject({ url: `/api/scans/${scanId}`, headers: doctor.auth })).json();
  const analysisOf = async (scanId: string) => {
    const [row] = await t.ctx.db.select().from(analyses).where(eq(analyses.scanId, scanId));
    assert.ok(row?.heatmapKey);
    return { ...row, heatmapKey: row.heatmapKey };
  };
  /** Counts the heatmaps drawn in the decoder's threads from now on. */
  const countRenders = () => {
    const render = t.ctx.imaging.renderHeatmap.bind(t.ctx.imaging);
    const counter = { renders: 0, restore: () => (t.ctx.imaging.renderHeatmap = render) };
    t.ctx.imaging.renderHeatmap = (...args) => {
      counter.renders++;
      return render(...args);
    };
    return counter;
  };

  test('the PNG a reader gets is, byte for byte, the one the analysis drew and stored before', { timeout: 120_000 }, async () => {
    const analyzer = createOnnxAnalyzer({ modelsDir: MODELS, threads: 1 });
    const registry = await ModelRegistry.load({ dir: MODELS, intraOpNumThreads: 1 });
    const maxPixels = t.ctx.config.maxImagePixels;
    try {
      const dicom = dicomFixture('MR1_UNC.dcm');
      const cases = [
        { label: 'brain JPEG', data: JPEG, filename: 'scan.jpg', contentType: 'image/jpeg', scanType: 'brain-mri' as const },
        { label: 'chest JPEG', data: CHEST_PNG, filename: 'scan.jpg', contentType: 'image/jpeg', scanType: 'chest-xray' as const },
        { label: 'DICOM MR', data: dicom, filename: 'scan.dcm', contentType: 'application/dicom', scanType: 'brain-mri' as const },
      ];
      for (const c of cases) {
        const scan = await upload(c.data, c.filename, c.contentType);
        // Eager rendering as the analyzer thread did it before: the same image, heatmap: true.
        const pixels = c.contentType === 'application/dicom' ? await decodeDisplayPixels(c.data, { maxPixels }) : await decodeOriginalPixels(c.data, { maxPixels });
        const eager = await analyzeScan(registry, pixels, { scanType: c.scanType, heatmap: true, maxPixels });
        assert.ok(eager.heatmap, `${c.label}: a finding with a heatmap`);

        // The job with a stand-in model, then the real analyzer on the image the job gave it.
        let image: ScanImage | undefined;
        await runAnalysis(t, scan._id, { ...gliomaOutput(), heatmapMap: heatmapMap() }, (given) => (image = given));
        assert.ok(image);
        const output = await analyzer.analyze(c.scanType, image, () => Promise.resolve());
        assert.ok(!output.refused, c.label);
        // The real analyzer's map, stored as the job stores it.
        const row = await analysisOf(scan._id);
        await t.ctx.db.update(analyses).set({ heatmapMap: output.heatmapMap, hotRegion: output.hotRegion }).where(eq(analyses.id, row.id));
        assert.deepEqual(output.hotRegion, eager.hotRegion, c.label);
        assert.equal(await t.ctx.storage.exists(row.heatmapKey), false, `${c.label}: no heatmap stored by the analysis`);

        const { result } = await detailOf(scan._id);
        const res = await t.app.inject({ url: localPath(result.heatmapUrl) });
        assert.equal(res.statusCode, 200, res.body);
        assert.equal(res.headers['content-type'], 'image/png');
        assert.ok(res.rawPayload.equals(eager.heatmap.png), `${c.label}: the eager PNG's bytes`);
        assert.ok((await t.ctx.storage.get(row.heatmapKey)).equals(eager.heatmap.png), `${c.label}: stored once drawn`);
      }
    } finally {
      await analyzer.close();
    }
  });

  test('two first reads at once draw it once and get the same bytes; later reads read the stored file', async () => {
    const scan = await upload(JPEG);
    await runAnalysis(t, scan._id, { ...gliomaOutput(), heatmapMap: heatmapMap() });
    const { result, width, height } = await detailOf(scan._id);
    const counter = countRenders();
    try {
      const [a, b] = await Promise.all([t.app.inject({ url: localPath(result.heatmapUrl) }), t.app.inject({ url: localPath(result.heatmapUrl) })]);
      assert.equal(a.statusCode, 200, a.body);
      assert.equal(b.statusCode, 200, b.body);
      assert.ok(a.rawPayload.equals(b.rawPayload));
      const png = await pngPixels(a.rawPayload);
      assert.deepEqual([png.width, png.height, png.channels], [width, height, 3], 'at the scan image\'s size, for the viewer\'s overlay');
      const again = await t.app.inject({ url: localPath(result.heatmapUrl) });
      assert.ok(again.rawPayload.equals(a.rawPayload));
      assert.equal(counter.renders, 1);
    } finally {
      counter.restore();
    }
  });

  test("a heatmap of a scan not yours is not found, with a bearer token or another's link", async () => {
    const scan = await upload(JPEG);
    await runAnalysis(t, scan._id, { ...gliomaOutput(), heatmapMap: heatmapMap() });
    const { result } = await detailOf(scan._id);
    const filePath = localPath(result.heatmapUrl).split('?')[0]!;
    const counter = countRenders();
    try {
      const res = await t.app.inject({ url: filePath, headers: other.auth });
      assert.equal(res.statusCode, 404, res.body);
      assert.ok(typeof res.json().error === 'string');
      assert.equal(counter.renders, 0, 'nothing drawn for someone who may not see it');
      // The owner's bearer token on the same path draws it.
      assert.equal((await t.app.inject({ url: filePath, headers: doctor.auth })).statusCode, 200);
    } finally {
      counter.restore();
    }
  });

  test('an analysis from before maps were kept serves its stored PNG; without it, the link is not found', async () => {
    const scan = await upload(JPEG);
    await runAnalysis(t, scan._id, { ...gliomaOutput(), heatmapMap: heatmapMap() });
    const row = await analysisOf(scan._id);
    // As migration 0011 leaves an older analysis: its PNG stored by the worker, no map.
    await t.ctx.db.update(analyses).set({ heatmapMap: null }).where(eq(analyses.id, row.id));
    const stored = Buffer.from(readFileSync(path.join(FIXTURES, 'images/chest-normal-1.png')));
    await t.ctx.storage.put(row.heatmapKey, stored, 'image/png');
    const { result } = await detailOf(scan._id);
    const counter = countRenders();
    try {
      const res = await t.app.inject({ url: localPath(result.heatmapUrl) });
      assert.equal(res.statusCode, 200, res.body);
      assert.ok(res.rawPayload.equals(stored));
      await t.ctx.storage.delete(row.heatmapKey);
      const gone = await t.app.inject({ url: localPath(result.heatmapUrl) });
      assert.equal(gone.statusCode, 404, gone.body);
      assert.equal(gone.json().error, 'File not found');
      assert.equal(counter.renders, 0);
    } finally {
      counter.restore();
    }
  });

  test('a heatmap that cannot be drawn answers an error, stores nothing, and the server goes on', async () => {
    const scan = await upload(JPEG);
    await runAnalysis(t, scan._id, { ...gliomaOutput(), heatmapMap: heatmapMap() });
    const row = await analysisOf(scan._id);
    const { result } = await detailOf(scan._id);

    // The original damaged in storage after the analysis: the display image cannot be decoded.
    const original = await t.ctx.storage.get(`${row.heatmapKey.split('.heatmap-')[0]}.original.jpg`);
    await t.ctx.storage.put(`${row.heatmapKey.split('.heatmap-')[0]}.original.jpg`, original.subarray(0, 600), 'image/jpeg');
    const res = await t.app.inject({ url: localPath(result.heatmapUrl) });
    assert.equal(res.statusCode, 422, res.body);
    assert.match(res.json().error, /^This scan's heatmap could not be shown: /);
    assert.equal(await t.ctx.storage.exists(row.heatmapKey), false);

    // A map that does not match its size (a bug, not the reader's doing): a 500 that hides why.
    const second = await upload(JPEG);
    await runAnalysis(t, second._id, { ...gliomaOutput(), heatmapMap: heatmapMap() });
    const secondRow = await analysisOf(second._id);
    await t.ctx.db.update(analyses).set({ heatmapMap: { width: 7, height: 7, values: [1, 2, 3] } }).where(eq(analyses.id, secondRow.id));
    const secondDetail = await detailOf(second._id);
    const broken = await t.app.inject({ url: localPath(secondDetail.result.heatmapUrl) });
    assert.equal(broken.statusCode, 500, broken.body);
    assert.deepEqual(Object.keys(broken.json()), ['error']);
    assert.doesNotMatch(broken.json().error, /map/);
    assert.equal(await t.ctx.storage.exists(secondRow.heatmapKey), false);
    assert.equal((await t.app.inject({ url: localPath(secondDetail.imageUrl) })).statusCode, 200, 'the server still answers');
  });

  test('a report made before anyone read the heatmap draws it, and the link then serves those bytes', async () => {
    const scan = await upload(JPEG);
    await runAnalysis(t, scan._id, { ...gliomaOutput(), heatmapMap: heatmapMap() });
    const row = await analysisOf(scan._id);
    const report = await t.app.inject({ method: 'POST', url: `/api/scans/${scan._id}/report`, headers: doctor.auth });
    assert.equal(report.statusCode, 201, report.body);
    const stored = await t.ctx.storage.get(row.heatmapKey);
    const { result } = await detailOf(scan._id);
    const res = await t.app.inject({ url: localPath(result.heatmapUrl) });
    assert.ok(res.rawPayload.equals(stored));
  });
  test('a report and a first read of the link at once draw the heatmap once', async () => {
    const scan = await upload(JPEG);
    await runAnalysis(t, scan._id, { ...gliomaOutput(), heatmapMap: heatmapMap() });
    const { result } = await detailOf(scan._id);
    const counter = countRenders();
    try {
      const [report, read] = await Promise.all([
        t.app.inject({ method: 'POST', url: `/api/scans/${scan._id}/report`, headers: doctor.auth }),
        t.app.inject({ url: localPath(result.heatmapUrl) }),
      ]);
      assert.equal(report.statusCode, 201, report.body);
      assert.equal(read.statusCode, 200, read.body);
      assert.equal(counter.renders, 1, 'the report and the link shared one render');
    } finally {
      counter.restore();
    }
  });
});
