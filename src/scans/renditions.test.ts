/**
 * An upload stores only its original; the display image and thumbnail are rendered by the first
 * reader of an image link, or for a DICOM by the analysis worker if it comes first (a JPEG or PNG
 * is analysed from its original's pixels, and nothing is stored). The links an upload returns
 * work immediately, and a file whose pixels cannot be decoded ends with its scan failed and a
 * reason, never stuck. A truncated JPEG or PNG is still refused at upload.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import sharp from 'sharp';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { gliomaOutput } from '../../test/helpers/analyzer-output.js';
import { createOnnxAnalyzer } from '../analysis/analyzer.js';
import { REPO_ROOT } from '../platform/config.js';
import { ImageDecodeError } from '../imaging/errors.js';
import { decodeDisplayPixels, decodeOriginalPixels } from '../imaging/index.js';
import { writeDicom } from '../imaging/testing/dicom-writer.js';
import { pngPixels } from '../imaging/testing/png.js';
import { createScanRenditions, type ScanImage } from './renditions.js';
import { scanFileKey } from './stored-files.js';
import { confirmHeaderPatient, FIXTURES, heatmapMap, localPath, runAnalysis, uploadRequest } from './test-support.js';

const DICOM_MR_SMALL = readFileSync(path.join(FIXTURES, 'imaging/MR_small_implicit.dcm'));
const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));
const CHEST_PNG = readFileSync(path.join(FIXTURES, 'images/chest-normal-1.png'));

/** RLE Lossless whose header is sound but whose frame says it has no segments: only decoding finds out. */
function undecodableRle(): Buffer {
  const frame = Buffer.alloc(64);
  frame.writeUInt32LE(0, 0);
  return writeDicom({
    transferSyntaxUid: '1.2.840.10008.1.2.5',
    elements: [
      { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.4' },
      { tag: 0x00080018, vr: 'UI', value: '1.2.3.4.5.6.8' },
      { tag: 0x00080060, vr: 'CS', value: 'MR' },
      { tag: 0x00280002, vr: 'US', value: [1] },
      { tag: 0x00280004, vr: 'CS', value: 'MONOCHROME2' },
      { tag: 0x00280010, vr: 'US', value: [8] },
      { tag: 0x00280011, vr: 'US', value: [8] },
      { tag: 0x00280100, vr: 'US', value: [16] },
      { tag: 0x00280101, vr: 'US', value: [16] },
      { tag: 0x00280102, vr: 'US', value: [15] },
      { tag: 0x00280103, vr: 'US', value: [0] },
    ],
    pixelData: { fragments: [frame] },
  });
}

/** How many times the app's image decoder ran while `during` did. */
async function decodesDuring(t: TestApp, during: () => Promise<unknown>): Promise<number> {
  const decode = t.ctx.imaging.decode.bind(t.ctx.imaging);
  let decodes = 0;
  t.ctx.imaging.decode = (bytes, opts) => {
    decodes++;
    return decode(bytes, opts);
  };
  try {
    await during();
  } finally {
    t.ctx.imaging.decode = decode;
  }
  return decodes;
}

describe('scan images rendered after upload', () => {
  let t: TestApp;
  let doctor: TestUser;
  before(async () => {
    // Originals in the file store, whose files these tests look at and remove (small originals
    // kept in the database are read the same way: originals.test.ts).
    t = await createTestApp('pglite', { env: { ORIGINALS_IN_DATABASE_MAX_KB: '0' } });
    doctor = await t.user();
  });
  after(() => t.close());

  const upload = async (data: Buffer) => {
    const res = await t.app.inject(
      uploadRequest(doctor, {
        data,
        filename: 'scan.dcm',
        contentType: 'application/dicom',
        fields: { patientId: uniqueId(), patientName: 'Ana Lima', ...(await confirmHeaderPatient(data)) },
      }),
    );
    assert.equal(res.statusCode, 201, res.body);
    return res.json<{ _id: string; status: string; imageUrl: string; thumbnailUrl: string }>();
  };

  test('a DICOM upload stores its original only, and its image and thumbnail links answer at once', async () => {
    const scan = await upload(DICOM_MR_SMALL);
    assert.equal(scan.status, 'processing');
    assert.ok(await t.ctx.storage.exists(scanFileKey(scan._id, 'original.dcm')));
    assert.equal(await t.ctx.storage.exists(scanFileKey(scan._id, 'image.png')), false);

    // Both links at once, as a page showing the new scan would.
    const [image, thumbnail] = await Promise.all([t.app.inject({ url: localPath(scan.imageUrl) }), t.app.inject({ url: localPath(scan.thumbnailUrl) })]);
    assert.equal(image.statusCode, 200, image.body);
    assert.equal(image.headers['content-type'], 'image/png');
    const png = await pngPixels(image.rawPayload);
    assert.deepEqual([png.width, png.height, png.channels], [64, 64, 1]);
    assert.ok(new Set(png.data).size > 2, 'a real picture, not a blank frame');
    assert.equal(thumbnail.statusCode, 200, thumbnail.body);
    const thumb = await pngPixels(thumbnail.rawPayload);
    assert.deepEqual([thumb.width, thumb.height], [64, 64], 'never enlarged');
    // Stored once rendered: the same bytes the next time.
    assert.ok((await t.ctx.storage.get(scanFileKey(scan._id, 'image.png'))).equals(image.rawPayload));
    const again = await t.app.inject({ url: localPath(scan.imageUrl) });
    assert.ok(again.rawPayload.equals(image.rawPayload));
  });

  test('the analysis renders the image of a DICOM upload and gives the model its pixels, decoded once', async () => {
    const scan = await upload(DICOM_MR_SMALL);
    let seen: ScanImage | undefined;
    const output = { ...gliomaOutput(), heatmapMap: heatmapMap() };
    const decodes = await decodesDuring(t, () => runAnalysis(t, scan._id, output, (image) => (seen = image)));
    assert.equal(decodes, 1, 'the original is decoded once, and its PNG never again');
    assert.ok(seen && 'pixels' in seen, 'the model got the pixels of the render, not a PNG to decode');
    // The very pixels of the stored display image.
    const stored = await pngPixels(await t.ctx.storage.get(scanFileKey(scan._id, 'image.png')));
    assert.deepEqual([seen.pixels.width, seen.pixels.height, seen.pixels.channels], [stored.width, stored.height, stored.channels]);
    assert.ok(Buffer.from(seen.pixels.data).equals(stored.data));
    assert.ok(await t.ctx.storage.exists(scanFileKey(scan._id, 'thumb.png')));
    const detail = (await t.app.inject({ url: `/api/scans/${scan._id}`, headers: doctor.auth })).json();
    assert.equal(detail.status, 'completed');
    const image = await t.app.inject({ url: localPath(detail.imageUrl) });
    assert.equal(image.statusCode, 200);
  });

  test('the analysis of a scan whose display image is stored reads that PNG and decodes nothing', async () => {
    const scan = await upload(DICOM_MR_SMALL);
    // A link reader rendered it first.
    const first = await t.app.inject({ url: localPath(scan.imageUrl) });
    assert.equal(first.statusCode, 200);
    let seen: ScanImage | undefined;
    const decodes = await decodesDuring(t, () => runAnalysis(t, scan._id, { ...gliomaOutput(), heatmapMap: heatmapMap() }, (image) => (seen = image)));
    assert.equal(decodes, 0);
    assert.ok(seen && 'png' in seen && seen.png.equals(first.rawPayload));
  });

  test('a scan deleted while its image is rendered leaves no rendered files behind', async () => {
    const scan = await upload(DICOM_MR_SMALL);
    const storage = t.ctx.storage;
    // The deletion lands while the original is being decoded.
    const deletingStorage = {
      ...storage,
      get: async (key: string) => {
        const bytes = await storage.get(key);
        await storage.delete(scanFileKey(scan._id, 'original.dcm'));
        return bytes;
      },
    };
    const renditions = createScanRenditions({ storage: deletingStorage, imaging: t.ctx.imaging, maxPixels: t.ctx.config.maxImagePixels });
    await renditions.read({ id: scan._id, originalKey: scanFileKey(scan._id, 'original.dcm'), imageKey: scanFileKey(scan._id, 'image.png'), thumbnailKey: scanFileKey(scan._id, 'thumb.png') }, 'image');
    assert.equal(await storage.exists(scanFileKey(scan._id, 'image.png')), false);
    assert.equal(await storage.exists(scanFileKey(scan._id, 'thumb.png')), false);
  });

  test('a render that ran out of time is tried again, by the next reader and by the analysis', async () => {
    const scan = await upload(DICOM_MR_SMALL);
    const decode = t.ctx.imaging.decode.bind(t.ctx.imaging);
    let timeouts = 1;
    t.ctx.imaging.decode = (bytes, opts) => {
      if (timeouts-- > 0) return Promise.reject(new ImageDecodeError('corrupt', 'The image could not be decoded within 10 seconds', true));
      return decode(bytes, opts);
    };
    try {
      const busy = await t.app.inject({ url: localPath(scan.imageUrl) });
      assert.equal(busy.statusCode, 503, busy.body);
      assert.match(busy.json().error, /try again/);
      assert.equal(busy.headers['retry-after'], '5');
      const image = await t.app.inject({ url: localPath(scan.imageUrl) });
      assert.equal(image.statusCode, 200, 'not remembered as undecodable');

      // In the worker a timeout is an ordinary failure (retried), not the scan's end.
      const other = await upload(DICOM_MR_SMALL);
      timeouts = 1;
      await assert.rejects(runAnalysis(t, other._id, { ...gliomaOutput(), heatmapMap: heatmapMap() }), /within 10 seconds/);
      const detail = (await t.app.inject({ url: `/api/scans/${other._id}`, headers: doctor.auth })).json();
      assert.notEqual(detail.status, 'failed');
    } finally {
      t.ctx.imaging.decode = decode;
    }
  });

  test('a DICOM file whose pixels cannot be decoded is accepted, then fails with a reason; its image link says why', async () => {
    const scan = await upload(undecodableRle());
    // Count the decodes the links cause: a failure is remembered, not decoded again per read.
    const decodes = await decodesDuring(t, async () => {
      const image = await t.app.inject({ url: localPath(scan.imageUrl) });
      assert.equal(image.statusCode, 422, image.body);
      assert.match(image.json().error, /could not be shown.*RLE data has 0 segments/);
      const thumbnail = await t.app.inject({ url: localPath(scan.thumbnailUrl) });
      assert.equal(thumbnail.statusCode, 422);
      assert.equal(thumbnail.json().error, image.json().error);
      assert.equal((await t.app.inject({ url: localPath(scan.imageUrl) })).statusCode, 422);
    });
    assert.equal(decodes, 1, 'decoded once for three reads');

    await runAnalysis(t, scan._id, { ...gliomaOutput(), heatmapMap: heatmapMap() });
    const detail = (await t.app.inject({ url: `/api/scans/${scan._id}`, headers: doctor.auth })).json();
    assert.equal(detail.status, 'failed');
    assert.match(detail.failureReason, /could not be decoded.*RLE/);
    // The server is still answering, and nothing was left behind but the original.
    assert.equal(await t.ctx.storage.exists(scanFileKey(scan._id, 'image.png')), false);
  });
});

describe('JPEG and PNG uploads: the original alone at upload, renditions on first read', () => {
  let t: TestApp;
  let doctor: TestUser;
  let admin: TestUser;
  before(async () => {
    // Originals in the file store, whose files these tests look at and remove (small originals
    // kept in the database are read the same way: originals.test.ts).
    t = await createTestApp('pglite', { env: { ORIGINALS_IN_DATABASE_MAX_KB: '0' } });
    [doctor, admin] = await Promise.all([t.user(), t.user({ role: 'admin' })]);
  });
  after(() => t.close());

  const RASTER = [
    { label: 'JPEG', data: JPEG, filename: 'scan.jpg', contentType: 'image/jpeg', original: 'original.jpg' },
    { label: 'PNG', data: CHEST_PNG, filename: 'scan.png', contentType: 'image/png', original: 'original.png' },
  ] as const;
  const post = (data: Buffer, filename: string, contentType: string) =>
    t.app.inject(uploadRequest(doctor, { data, filename, contentType, fields: { patientId: uniqueId(), patientName: 'Ana Lima' } }));
  const upload = async (data: Buffer, filename = 'scan.jpg', contentType = 'image/jpeg') => {
    const res = await post(data, filename, contentType);
    assert.equal(res.statusCode, 201, res.body);
    return res.json<{ _id: string; imageUrl: string; thumbnailUrl: string }>();
  };
  /** The names of every stored file of a scan (its id is in each key). */
  const filesOf = async (scanId: string) =>
    (await readdir(path.join(t.ctx.config.dataDir, 'files'), { recursive: true }))
      .filter((f) => f.includes(scanId))
      .map((f) => f.slice(f.indexOf(scanId) + scanId.length + 1))
      .sort();
  const allFiles = async () => (await readdir(path.join(t.ctx.config.dataDir, 'files'), { recursive: true, withFileTypes: true })).filter((f) => f.isFile()).length;
  /** What the upload stored as the display image before it stored the original alone. */
  const displayPngOf = async (data: Buffer) => (await t.ctx.imaging.decode(data, { maxPixels: t.ctx.config.maxImagePixels })).png;

  for (const { label, data, filename, contentType, original } of RASTER) {
    test(`a ${label} upload stores one file; the first read renders the display image and thumbnail, stores them and serves them after`, async () => {
      const scan = await upload(data, filename, contentType);
      assert.deepEqual(await filesOf(scan._id), [original]);

      const [thumbnail, image] = await Promise.all([t.app.inject({ url: localPath(scan.thumbnailUrl) }), t.app.inject({ url: localPath(scan.imageUrl) })]);
      assert.equal(image.statusCode, 200, image.body);
      assert.equal(image.headers['content-type'], 'image/png');
      assert.equal(thumbnail.statusCode, 200, thumbnail.body);
      assert.equal(thumbnail.headers['content-type'], 'image/png');
      assert.deepEqual(await filesOf(scan._id), [original, 'image.png', 'thumb.png'].sort());
      // The same picture the upload used to store.
      const shown = await pngPixels(image.rawPayload);
      const before = await pngPixels(await displayPngOf(data));
      assert.deepEqual([shown.width, shown.height, shown.channels], [before.width, before.height, before.channels]);
      assert.ok(shown.data.equals(before.data), 'the same pixels as the display image made at upload before');

      // Read from storage now: no render, the same bytes.
      const decodes = await decodesDuring(t, async () => {
        const again = await t.app.inject({ url: localPath(scan.imageUrl) });
        assert.ok(again.rawPayload.equals(image.rawPayload));
        assert.ok((await t.app.inject({ url: localPath(scan.thumbnailUrl) })).rawPayload.equals(thumbnail.rawPayload));
      });
      assert.equal(decodes, 0);
    });
  }

  test('a truncated or damaged JPEG or PNG is still refused at upload with the message it had, and nothing is stored', async () => {
    const flipped = Buffer.from(CHEST_PNG);
    flipped[Math.floor(CHEST_PNG.length * 0.6)]! ^= 0xff;
    const cases = [
      { data: JPEG.subarray(0, Math.floor(JPEG.length / 2)), filename: 'scan.jpg', contentType: 'image/jpeg' },
      // Only the last bytes missing: the end of the entropy-coded data and the EOI marker.
      { data: JPEG.subarray(0, JPEG.length - 12), filename: 'scan.jpg', contentType: 'image/jpeg' },
      { data: CHEST_PNG.subarray(0, Math.floor(CHEST_PNG.length * 0.9)), filename: 'scan.png', contentType: 'image/png' },
      { data: flipped, filename: 'scan.png', contentType: 'image/png' },
    ];
    const filesBefore = await allFiles();
    for (const { data, filename, contentType } of cases) {
      const res = await post(data, filename, contentType);
      assert.equal(res.statusCode, 400, `${filename} of ${data.length} bytes: ${res.body}`);
      assert.match(res.json().error, /truncated or corrupt/);
      // The message the full decode (what the upload ran before) gives.
      await assert.rejects(displayPngOf(data), (err: Error) => err.message === res.json().error);
    }
    assert.equal(await allFiles(), filesBefore);
  });

  test('the analysis of a JPEG upload gets its original to decode in the analyzer, the pixels of its display image, and stores no rendition', async () => {
    const scan = await upload(JPEG);
    let seen: ScanImage | undefined;
    const decodes = await decodesDuring(t, () => runAnalysis(t, scan._id, { ...gliomaOutput(), heatmapMap: heatmapMap() }, (image) => (seen = image)));
    assert.equal(decodes, 0, 'no render, no PNG encoded');
    assert.ok(seen && 'original' in seen);
    assert.ok(seen.original.equals(JPEG), 'the original as uploaded');
    assert.deepEqual((await filesOf(scan._id)).filter((f) => !f.startsWith('heatmap-')), ['original.jpg'], 'no rendition stored by the analysis');
    const detail = (await t.app.inject({ url: `/api/scans/${scan._id}`, headers: doctor.auth })).json();
    assert.equal(detail.status, 'completed');
    const shown = await pngPixels((await t.app.inject({ url: localPath(detail.imageUrl) })).rawPayload);
    // What the analyzer's thread decodes from it.
    const decoded = await decodeOriginalPixels(seen.original, { maxPixels: t.ctx.config.maxImagePixels });
    assert.deepEqual([decoded.width, decoded.height, decoded.channels], [shown.width, shown.height, shown.channels]);
    assert.ok(Buffer.from(decoded.data).equals(shown.data), 'the model saw what the display image shows');
  });

  test('an image served from a JPEG whose EXIF names the patient carries none of it', async () => {
    const withExif = await sharp(JPEG)
      .withExif({ IFD0: { ImageDescription: 'Patient Jane Roe 1970-01-01', Artist: 'Jane Roe' } })
      .jpeg()
      .toBuffer();
    assert.ok(withExif.includes('Jane Roe'), 'the fixture carries the name');
    const scan = await upload(withExif);
    for (const url of [scan.imageUrl, scan.thumbnailUrl]) {
      const res = await t.app.inject({ url: localPath(url) });
      assert.equal(res.statusCode, 200);
      assert.equal(res.rawPayload.includes('Jane Roe'), false);
      const meta = await sharp(res.rawPayload).metadata();
      assert.equal(meta.exif, undefined);
    }
  });

  test("the image and thumbnail links and a report read the app's one renditions instance", async () => {
    const scan = await upload(JPEG);
    const read = t.ctx.renditions.read.bind(t.ctx.renditions);
    const reads: string[] = [];
    t.ctx.renditions.read = (s, which) => {
      reads.push(which);
      return read(s, which);
    };
    try {
      assert.equal((await t.app.inject({ url: localPath(scan.imageUrl) })).statusCode, 200);
      assert.equal((await t.app.inject({ url: localPath(scan.thumbnailUrl) })).statusCode, 200);
      const report = await t.app.inject({ method: 'POST', url: `/api/scans/${scan._id}/report`, headers: doctor.auth });
      assert.equal(report.statusCode, 201, report.body);
    } finally {
      t.ctx.renditions.read = read;
    }
    // A route with its own instance (createScanRenditions) would read past this one.
    assert.deepEqual(reads, ['image', 'thumbnail', 'image']);
  });

  test('a deleted JPEG scan leaves no file behind, whether or not its image was read; its links then answer 404', async () => {
    const read = await upload(JPEG);
    assert.equal((await t.app.inject({ url: localPath(read.thumbnailUrl) })).statusCode, 200);
    const unread = await upload(JPEG);
    for (const scan of [read, unread]) {
      assert.equal((await t.app.inject({ method: 'DELETE', url: `/api/scans/${scan._id}`, headers: admin.auth })).statusCode, 200);
      assert.deepEqual(await filesOf(scan._id), []);
      assert.equal((await t.app.inject({ url: localPath(scan.imageUrl) })).statusCode, 404);
      assert.deepEqual(await filesOf(scan._id), [], 'a link read after the deletion renders nothing');
    }
  });
});

describe('the model answers the same from a JPEG or PNG original\'s pixels as from the display PNG', () => {
  test('same probabilities, finding and hot region for a brain JPEG and a chest PNG', async () => {
    const t = await createTestApp('pglite');
    const analyzer = createOnnxAnalyzer({ modelsDir: path.join(REPO_ROOT, 'models'), threads: 1 });
    try {
      const maxPixels = t.ctx.config.maxImagePixels;
      for (const [scanType, data] of [['brain-mri', JPEG], ['chest-xray', CHEST_PNG]] as const) {
        // Before: the display PNG the upload stored, read back by the worker; then the original's pixels.
        const { png } = await t.ctx.imaging.decode(data, { maxPixels });
        const before = await analyzer.analyze(scanType, { png }, () => Promise.resolve());
        const fromPixels = await analyzer.analyze(scanType, { pixels: await decodeDisplayPixels(data, { maxPixels }) }, () => Promise.resolve());
        // Now: the original, decoded in the analyzer's thread.
        const now = await analyzer.analyze(scanType, { original: data }, () => Promise.resolve());
        assert.equal(now.refused, false);
        assert.equal(before.refused, false);
        assert.deepEqual(fromPixels, now, scanType);
        if (now.refused || before.refused) return;
        assert.deepEqual(now.result, before.result, scanType);
        assert.deepEqual(now.hotRegion, before.hotRegion, scanType);
        assert.deepEqual(now.heatmapMap, before.heatmapMap, scanType);
      }
    } finally {
      await analyzer.close();
      await t.close();
    }
  });
});

describe("the worker's analysis reads the app's one renditions instance", () => {
  test('a DICOM upload analysed by the in-process worker goes through ctx.renditions', async () => {
    const map = heatmapMap();
    const t = await createTestApp('pglite', { worker: true, analyzer: { analyze: () => Promise.resolve({ ...gliomaOutput(), heatmapMap: map }) } });
    try {
      const doctor = await t.user();
      const readForAnalysis = t.ctx.renditions.readForAnalysis.bind(t.ctx.renditions);
      const reads: string[] = [];
      t.ctx.renditions.readForAnalysis = (scan) => {
        reads.push(scan.id);
        return readForAnalysis(scan);
      };
      const res = await t.app.inject(
        uploadRequest(doctor, {
          data: DICOM_MR_SMALL,
          filename: 'scan.dcm',
          contentType: 'application/dicom',
          fields: { patientId: uniqueId(), patientName: 'Ana Lima', confirmDicomPatientId: '4MR1', confirmDicomPatientName: 'MR1 CompressedSamples' },
        }),
      );
      assert.equal(res.statusCode, 201, res.body);
      const id = res.json<{ _id: string }>()._id;
      for (let i = 0; ; i++) {
        const status = (await t.app.inject({ url: `/api/scans/${id}`, headers: doctor.auth })).json<{ status: string }>().status;
        if (status === 'completed') break;
        assert.ok(i < 200 && status === 'processing', `scan ${id} is ${status}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      // A job with its own instance (createScanRenditions in createRuntime) would read past this one.
      assert.deepEqual(reads, [id]);
    } finally {
      await t.close();
    }
  });
});
