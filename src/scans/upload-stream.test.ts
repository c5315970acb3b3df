/**
 * Uploads larger than IN_MEMORY_BYTES are streamed to storage as they arrive (src/scans/upload.ts):
 * stored whole and checked, refused with nothing left behind (over the limit, not an image,
 * truncated, refused by a rule after the file was in, the client gone mid-file), on local
 * disk and on S3 (s3rver on loopback).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { eq } from 'drizzle-orm';
import S3rver from 's3rver';
import sharp from 'sharp';
import { gliomaOutput } from '../../test/helpers/analyzer-output.js';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { syntheticImage } from '../imaging/testing/dicom-writer.js';
import { sharedDicom } from '../imaging/testing/paths.js';
import { scans } from '../platform/db/schema.js';
import { confirmHeaderPatient, heatmapMap, localPath, multipart, runAnalysis, uploadRequest } from './test-support.js';
import { IN_MEMORY_BYTES } from './upload.js';
import { scanFileKey } from './stored-files.js';

const MB = 1024 * 1024;

/** An uncompressed 16-bit DICOM series of `frames` 512 x 512 frames (0.5 MB each). */
function dicomSeries(frames: number, extra: Parameters<typeof syntheticImage>[0]['extra'] = []): Buffer {
  const values = new Uint16Array(512 * 512 * frames);
  for (let i = 0; i < values.length; i++) values[i] = (i * 7) & 0xfff;
  return syntheticImage({ rows: 512, columns: 512, values, frames, extra });
}

/** Every file under `dir`, relative to it; [] when it does not exist. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort();
}

/**
 * POSTs an upload over a real connection in 64 kB writes, as a client would (app.inject hands
 * the body over in one piece), answering the status and the JSON body.
 */
async function postOverHttp(t: TestApp, user: TestUser, body: { payload: Buffer; headers: Record<string, string> }) {
  if (!t.app.server.listening) await t.app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = t.app.server.address() as AddressInfo;
  return new Promise<{ statusCode: number; json: { error?: string } }>((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/api/scans', headers: { ...body.headers, ...user.auth, 'content-length': String(body.payload.length) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ statusCode: res.statusCode!, json: JSON.parse(Buffer.concat(chunks).toString()) as { error?: string } }));
      },
    );
    req.on('error', reject);
    void (async () => {
      for (let at = 0; at < body.payload.length; at += 64 * 1024) {
        if (!req.write(body.payload.subarray(at, at + 64 * 1024))) await new Promise((r) => req.once('drain', r));
      }
      req.end();
    })();
  });
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Noise, so the files stay large once compressed: past what is kept in memory, pixels long after the header. */
function noise(bytes: number): Buffer {
  const data = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) data[i] = (Math.imul(i + 1, 2654435761) >>> 24) & 0xff;
  return data;
}

/** The large files whose checks used to read them back whole: JPEG, PNG, compressed and deflated DICOM. */
async function largeImages(): Promise<{ name: string; data: Buffer; width: number; height: number }[]> {
  const jpeg = await sharp(noise(1200 * 1000 * 3), { raw: { width: 1200, height: 1000, channels: 3 } })
    .jpeg({ quality: 100 })
    .withMetadata({ orientation: 6 })
    .toBuffer();
  const png = await sharp(randomBytes(1300 * 1000), { raw: { width: 1300, height: 1000, channels: 1 } }).png({ compressionLevel: 1 }).toBuffer();
  const values = new Uint16Array(randomBytes(512 * 512 * 4 * 2).buffer).map((v) => v & 0xfff);
  const deflated = syntheticImage({ rows: 512, columns: 512, values, frames: 4, transferSyntaxUid: '1.2.840.10008.1.2.1.99' });
  const jpegLs = sharedDicom('cr_chest/RG1_JLSN.dcm');
  const images = [
    // EXIF orientation 6: shown turned a quarter, so 1000 wide.
    { name: 'JPEG', data: jpeg, width: 1000, height: 1200 },
    { name: 'PNG', data: png, width: 1300, height: 1000 },
    { name: 'deflated DICOM', data: deflated, width: 512, height: 512 },
    // A computed radiograph of the shared set (its MANIFEST): 1841 x 1955, one JPEG-LS frame in 64 kB fragments.
    { name: 'JPEG-LS DICOM', data: jpegLs, width: 1841, height: 1955 },
  ];
  for (const image of images) assert.ok(image.data.length > IN_MEMORY_BYTES, `${image.name}: ${image.data.length} bytes`);
  return images;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The tests of one storage: `stored()` lists what is in it under scans/, `streamed` the keys written by putStream. */
function streamingTests(opts: {
  app: () => TestApp;
  doctor: () => TestUser;
  stored: () => Promise<string[]>;
  streamed: string[];
  /** The keys read back whole (storage.get). */
  wholeReads: string[];
  maxUploadMb: number;
}) {
  const upload = async (data: Buffer, fields: Record<string, string> = { patientId: uniqueId(), patientName: 'Large Series' }) =>
    opts.app().app.inject(
      uploadRequest(opts.doctor(), { data, filename: 'series.dcm', contentType: 'application/dicom', fields: { ...fields, ...(await confirmHeaderPatient(data)) } }),
    );
  const scanRows = async () => (await opts.app().database.db.select({ id: scans.id }).from(scans)).length;

  test('a DICOM series larger than what is kept in memory is streamed to storage and stored whole', async () => {
    const series = dicomSeries(6);
    assert.ok(series.length > 2 * IN_MEMORY_BYTES);
    const streamedBefore = opts.streamed.length;
    const res = await upload(series);
    assert.equal(res.statusCode, 201, res.body);
    const scanId = res.json()._id as string;
    assert.deepEqual(opts.streamed.slice(streamedBefore), [scanFileKey(scanId, 'original.dcm')]);
    const original = await opts.app().ctx.storage.get(scanFileKey(scanId, 'original.dcm'));
    assert.equal(original.length, series.length);
    assert.ok(original.equals(series), 'the stored original is the uploaded file');
    const [row] = await opts.app().database.db.select().from(scans).where(eq(scans.id, scanId));
    assert.equal(row!.fileSize, series.length);
    assert.equal(row!.sha256, sha256(series));
    assert.equal(row!.width, 512);
    assert.deepEqual((await opts.stored()).filter((k) => k.includes(scanId)), [scanFileKey(scanId, 'original.dcm')]);
  });

  test('a file over MAX_UPLOAD_MB is refused with 413 once streaming, and nothing is left in storage', async () => {
    const before = await opts.stored();
    const streamedBefore = opts.streamed.length;
    // Just over the limit, so the body is not refused from its Content-Length before it is read.
    const series = dicomSeries(2);
    const big = Buffer.concat([series, Buffer.alloc(opts.maxUploadMb * MB + 1000 - series.length)]);
    const form = multipart([
      { name: 'patientId', value: uniqueId() },
      { name: 'patientName', value: 'Too Large' },
      { name: 'image', filename: 'series.dcm', contentType: 'application/dicom', data: big },
    ]);
    const res = await postOverHttp(opts.app(), opts.doctor(), form);
    assert.equal(res.statusCode, 413);
    assert.match(res.json.error ?? '', new RegExp(`${opts.maxUploadMb} MB`));
    assert.equal(opts.streamed.length, streamedBefore + 1, 'the file was being streamed when the limit was hit');
    assert.deepEqual(await opts.stored(), before);
  });

  test('a large file that is not an image, or a truncated DICOM series, is refused as before and leaves nothing', async () => {
    const before = await opts.stored();
    const noise = Buffer.alloc(3 * MB, 0x5a);
    const notImage = await upload(noise);
    assert.equal(notImage.statusCode, 415, notImage.body);
    assert.match(notImage.json().error, /not a JPEG, PNG or DICOM/);

    const series = dicomSeries(6);
    const truncated = await upload(series.subarray(0, series.length - 4096));
    assert.equal(truncated.statusCode, 400, truncated.body);
    assert.match(truncated.json().error, /truncated/);
    assert.deepEqual(await opts.stored(), before);
  });

  test('a DICOM header longer than what is kept in memory is checked from the stored file', async () => {
    // A private OB element of 1.5 MB before the pixel data: the kept head ends inside it.
    const series = dicomSeries(2, [{ tag: 0x00091010, vr: 'OB', value: new Uint8Array(1.5 * MB) }]);
    const ok = await upload(series);
    assert.equal(ok.statusCode, 201, ok.body);
    const before = await opts.stored();
    const truncated = await upload(series.subarray(0, series.length - 100));
    assert.equal(truncated.statusCode, 400, truncated.body);
    assert.match(truncated.json().error, /truncated/);
    assert.deepEqual(await opts.stored(), before);
  });

  test('a large JPEG, PNG, compressed or deflated DICOM is checked from its header, never read back whole, and renders', async () => {
    for (const image of await largeImages()) {
      const readsBefore = opts.wholeReads.length;
      const res = await upload(image.data);
      assert.equal(res.statusCode, 201, `${image.name}: ${res.body}`);
      const scanId = res.json()._id as string;
      assert.deepEqual(opts.wholeReads.slice(readsBefore), [], `${image.name}: nothing read back whole at upload`);
      const [row] = await opts.app().database.db.select().from(scans).where(eq(scans.id, scanId));
      assert.deepEqual([row!.width, row!.height], [image.width, image.height], image.name);
      assert.equal(row!.sha256, sha256(image.data));
      // The worker (here the first reader of the link) renders it from the stored original.
      const shown = await opts.app().app.inject({ url: localPath(res.json().imageUrl as string) });
      assert.equal(shown.statusCode, 200, `${image.name}: ${shown.body.slice(0, 200)}`);
      const meta = await sharp(shown.rawPayload).metadata();
      assert.deepEqual([meta.width, meta.height], [row!.width, row!.height], image.name);
    }
  });

  test('a large file whose header is sound but whose pixel data is cut is accepted, then fails with the reason', async () => {
    const [jpeg, , , jpegLs] = await largeImages();
    for (const image of [jpeg!, jpegLs!]) {
      const cut = image.data.subarray(0, image.data.length - 64 * 1024);
      const res = await upload(cut);
      assert.equal(res.statusCode, 201, `${image.name}: ${res.body}`);
      const scanId = res.json()._id as string;
      await runAnalysis(opts.app(), scanId, { ...gliomaOutput(), heatmapMap: heatmapMap() });
      const detail = (await opts.app().app.inject({ url: `/api/scans/${scanId}`, headers: opts.doctor().auth })).json();
      assert.equal(detail.status, 'failed', image.name);
      assert.match(detail.failureReason, /could not be decoded.*(truncated|premature|corrupt)/i, image.name);
    }
  });

  test('a refusal after the file was streamed (a form field after it, a bad scanType, a missing patientName) removes it', async () => {
    const before = await opts.stored();
    const rowsBefore = await scanRows();
    const streamedBefore = opts.streamed.length;
    const series = dicomSeries(4);
    const patientId = uniqueId();
    const lateField = multipart([
      { name: 'image', filename: 'series.dcm', contentType: 'application/dicom', data: series },
      { name: 'notes', value: 'not a field of the form' },
    ]);
    const res = await opts.app().app.inject({
      method: 'POST',
      url: '/api/scans',
      headers: { ...lateField.headers, ...opts.doctor().auth },
      payload: lateField.payload,
    });
    assert.equal(res.statusCode, 400, res.body);
    assert.match(res.json().error, /"notes" is not allowed/);

    const badType = await upload(series, { patientId, patientName: 'Bad Type', scanType: 'knee-ct' });
    assert.equal(badType.statusCode, 400, badType.body);
    assert.match(badType.json().error, /scanType must be one of/);
    const noName = await upload(series, { patientId });
    assert.equal(noName.statusCode, 400, noName.body);
    assert.match(noName.json().error, /"patientName" is required/);
    assert.equal(opts.streamed.length, streamedBefore + 3, 'the files were streamed before the refusals');
    assert.deepEqual(await opts.stored(), before);
    assert.equal(await scanRows(), rowsBefore);
  });
}

describe('streamed uploads, local storage', () => {
  const MAX_UPLOAD_MB = 4;
  let t: TestApp;
  let doctor: TestUser;
  const streamed: string[] = [];
  const wholeReads: string[] = [];
  before(async () => {
    t = await createTestApp('pglite', { env: { MAX_UPLOAD_MB: String(MAX_UPLOAD_MB) } });
    doctor = await t.user();
    const get = t.ctx.storage.get.bind(t.ctx.storage);
    t.ctx.storage.get = (key) => {
      wholeReads.push(key);
      return get(key);
    };
    const putStream = t.ctx.storage.putStream.bind(t.ctx.storage);
    t.ctx.storage.putStream = (key, body, contentType) => {
      streamed.push(key);
      return putStream(key, body, contentType);
    };
  });
  after(() => t.close());
  const root = () => path.join(t.dataDir, 'files');

  streamingTests({ app: () => t, doctor: () => doctor, stored: () => filesUnder(root()), streamed, wholeReads, maxUploadMb: MAX_UPLOAD_MB });

  test('a client that disconnects mid-file leaves no file and no row', async () => {
    if (!t.app.server.listening) await t.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = t.app.server.address() as AddressInfo;
    const before = await filesUnder(root());
    const rowsBefore = (await t.database.db.select({ id: scans.id }).from(scans)).length;
    const patientId = uniqueId();
    const body = multipart([
      { name: 'patientId', value: patientId },
      { name: 'patientName', value: 'Gone Midway' },
      { name: 'image', filename: 'series.dcm', contentType: 'application/dicom', data: dicomSeries(6) },
    ]);
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/api/scans',
      headers: { ...body.headers, ...doctor.auth, 'content-length': String(body.payload.length) },
    });
    req.on('error', () => undefined);
    // Half of the file: past what is kept in memory, so it is being written to storage.
    req.write(body.payload.subarray(0, Math.floor(body.payload.length / 2)));
    const writing = async () => (await filesUnder(root())).some((f) => f.endsWith('.tmp'));
    for (let i = 0; i < 400 && !(await writing()); i++) await sleep(25);
    assert.ok(await writing(), 'the upload was being written to storage before the client left');
    req.destroy();
    for (let i = 0; i < 400 && (await writing()); i++) await sleep(25);
    assert.deepEqual(await filesUnder(root()), before);
    assert.equal((await t.database.db.select({ id: scans.id }).from(scans)).length, rowsBefore, 'no scan row');
    const res = await t.app.inject({ method: 'GET', url: `/api/patients/${patientId}`, headers: doctor.auth });
    assert.equal(res.statusCode, 404, 'no patient was created either');
  });
  test('a client that disconnects mid-way through a DICOM body leaves no file and no row', async () => {
    if (!t.app.server.listening) await t.app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = t.app.server.address() as AddressInfo;
    const before = await filesUnder(root());
    const rowsBefore = (await t.database.db.select({ id: scans.id }).from(scans)).length;
    const file = dicomSeries(6);
    const req = http.request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/api/scans',
      headers: { ...doctor.auth, 'content-type': 'application/dicom', 'content-length': String(file.length) },
    });
    req.on('error', () => undefined);
    req.write(file.subarray(0, Math.floor(file.length / 2)));
    const writing = async () => (await filesUnder(root())).some((f) => f.endsWith('.tmp'));
    for (let i = 0; i < 400 && !(await writing()); i++) await sleep(25);
    assert.ok(await writing(), 'the body was being written to storage before the client left');
    req.destroy();
    for (let i = 0; i < 400 && (await writing()); i++) await sleep(25);
    assert.deepEqual(await filesUnder(root()), before);
    assert.equal((await t.database.db.select({ id: scans.id }).from(scans)).length, rowsBefore, 'no scan row');
  });
});

describe('streamed uploads, S3 storage (s3rver)', () => {
  // Over the 8 MB part size, so the large upload goes as a multipart upload of several parts.
  const MAX_UPLOAD_MB = 12;
  const bucket = 'imagemedix-stream-test';
  const dir = mkdtempSync(path.join(tmpdir(), 'imagemedix-s3-'));
  const s3 = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: dir, configureBuckets: [{ name: bucket, configs: [] }] });
  let t: TestApp;
  let doctor: TestUser;
  let client: S3Client;
  const streamed: string[] = [];
  const wholeReads: string[] = [];
  before(async () => {
    const { port } = await s3.run();
    const endpoint = `http://127.0.0.1:${port}`;
    t = await createTestApp('pglite', {
      env: {
        MAX_UPLOAD_MB: String(MAX_UPLOAD_MB),
        S3_BUCKET: bucket,
        S3_ENDPOINT: endpoint,
        S3_ACCESS_KEY_ID: 'S3RVER',
        S3_SECRET_ACCESS_KEY: 'S3RVER',
        S3_FORCE_PATH_STYLE: 'true',
      },
    });
    client = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    doctor = await t.user();
    const putStream = t.ctx.storage.putStream.bind(t.ctx.storage);
    t.ctx.storage.putStream = (key, body, contentType) => {
      streamed.push(key);
      return putStream(key, body, contentType);
    };
    const get = t.ctx.storage.get.bind(t.ctx.storage);
    t.ctx.storage.get = (key) => {
      wholeReads.push(key);
      return get(key);
    };
  });
  after(async () => {
    await t?.close();
    client?.destroy();
    await s3.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const stored = async () => {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'scans/' }));
    return (page.Contents ?? []).map((o) => o.Key!).sort();
  };

  streamingTests({ app: () => t, doctor: () => doctor, stored, streamed, wholeReads, maxUploadMb: MAX_UPLOAD_MB });

  test('a series over the part size is sent in parts and read back whole', async () => {
    const series = dicomSeries(20);
    assert.ok(series.length > 8 * MB);
    const res = await t.app.inject(
      uploadRequest(doctor, { data: series, filename: 's.dcm', contentType: 'application/dicom', fields: { patientId: uniqueId(), patientName: 'Long Series' } }),
    );
    assert.equal(res.statusCode, 201, res.body);
    const original = await t.ctx.storage.get(scanFileKey(res.json()._id, 'original.dcm'));
    assert.equal(sha256(original), sha256(series));
  });
});

describe('streamed uploads: a DICOM header past what is read back', () => {
  let t: TestApp;
  let doctor: TestUser;
  const ranges: number[] = [];
  const wholeReads: string[] = [];
  before(async () => {
    t = await createTestApp('pglite', { env: { MAX_UPLOAD_MB: '24' } });
    doctor = await t.user();
    const readRange = t.ctx.storage.readRange.bind(t.ctx.storage);
    t.ctx.storage.readRange = (key, start, end) => {
      ranges.push(end - start);
      return readRange(key, start, end);
    };
    const get = t.ctx.storage.get.bind(t.ctx.storage);
    t.ctx.storage.get = (key) => {
      wholeReads.push(key);
      return get(key);
    };
  });
  after(() => t.close());

  test('a header of 4 MB is read back in a 4 MB prefix; one of 17 MB is refused (422) after 16 MB, never read whole', async () => {
    const upload = (data: Buffer) =>
      t.app.inject(uploadRequest(doctor, { data, filename: 's.dcm', contentType: 'application/dicom', fields: { patientId: uniqueId(), patientName: 'Long Header' } }));
    const ok = await upload(dicomSeries(8, [{ tag: 0x00091010, vr: 'OB', value: new Uint8Array(3 * MB) }]));
    assert.equal(ok.statusCode, 201, ok.body);
    assert.deepEqual(ranges, [4 * MB]);
    const refused = await upload(dicomSeries(8, [{ tag: 0x00091010, vr: 'OB', value: new Uint8Array(17 * MB) }]));
    assert.equal(refused.statusCode, 422, refused.body);
    assert.match(refused.json().error, /header is longer than 16 MB/);
    assert.deepEqual(ranges, [4 * MB, 4 * MB, 16 * MB]);
    assert.deepEqual(wholeReads, []);
  });
});
