import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { gliomaOutput } from '../../test/helpers/analyzer-output.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { analyses, reports, scans } from '../platform/db/schema.js';
import { syntheticImage } from '../imaging/testing/dicom-writer.js';
import { pngPixels } from '../imaging/testing/png.js';
import { scanFileKey } from './stored-files.js';
import {
  FIXTURES,
  SHARED_DATASETS,
  confirmHeaderPatient,
  heatmapMap,
  localPath,
  multipart,
  pdfText,
  pngClaiming,
  pngSize,
  runAnalysis,
  uploadRequest,
  type UploadOptions,
} from './test-support.js';

/**
 * A signature with its first character changed: always a different decoded value (the last
 * base64url character carries padding bits, so changing it can leave the bytes as they were).
 */
const tamper = (sig: string): string => `${sig.startsWith('A') ? 'B' : 'A'}${sig.slice(1)}`;

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));
const CHEST_PNG = readFileSync(path.join(FIXTURES, 'images/chest-normal-1.png'));
const DICOM_MR_SMALL = readFileSync(path.join(FIXTURES, 'imaging/MR_small_implicit.dcm'));
const EDGE_DIR = path.join(SHARED_DATASETS, 'dicom/edge');

const BRAIN_OUTPUT = gliomaOutput({
  model: { id: 'brain-mri-resnet', version: '1.2.0' },
  confidence: 0.91,
  tumorLocation: 'upper right',
  hotRegion: { x: 10, y: 12, width: 30, height: 20 },
});

for (const kind of await databaseKinds()) {
  describe(`scans (${kind})`, () => {
    let t: TestApp;
    let doctorA: TestUser;
    let doctorB: TestUser;
    let admin: TestUser;

    before(async () => {
      // A 1 MB limit keeps the oversized-upload test small; every fixture is below it.
      // Originals in the file store, whose files these tests look at (small originals kept in
      // the database are stored, read and deleted in originals.test.ts).
      t = await createTestApp(kind, { env: { MAX_UPLOAD_MB: '1', ORIGINALS_IN_DATABASE_MAX_KB: '0' } });
      [doctorA, doctorB, admin] = await Promise.all([t.user(), t.user(), t.user({ role: 'admin' })]);
    });
    after(() => t.close());

    const upload = (user: TestUser | null, opts: UploadOptions) => t.app.inject(uploadRequest(user, opts));
    const newPatientFields = (extra: Record<string, string> = {}) => ({
      patientId: uniqueId(),
      patientName: 'Priya Mehta',
      ...extra,
    });
    /** Uploads a JPEG for a new patient of `user` and returns the 201 body. */
    const uploadJpeg = async (user: TestUser, fields: Record<string, string> = {}) => {
      const res = await upload(user, { data: JPEG, fields: newPatientFields(fields) });
      assert.equal(res.statusCode, 201, res.body);
      return res.json();
    };
    const get = (user: TestUser | null, url: string) => t.app.inject({ method: 'GET', url, headers: user?.auth ?? {} });
    const send = (user: TestUser | null, method: 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object) =>
      t.app.inject({ method, url, headers: user?.auth ?? {}, ...(payload ? { payload } : {}) });

    describe('upload', () => {
      test('an upload is sniffed once: the whole-file check is told its kind (JPEG, PNG, deflated DICOM) and answers that kind', async () => {
        const deflated = syntheticImage({ rows: 64, columns: 64, values: new Uint16Array(64 * 64).map((_, i) => i & 0xfff), transferSyntaxUid: '1.2.840.10008.1.2.1.99' });
        const check = t.ctx.imaging.check.bind(t.ctx.imaging);
        const told: string[] = [];
        t.ctx.imaging.check = async (bytes, opts) => {
          told.push(opts.kind);
          const checked = await check(bytes, opts);
          assert.equal(checked.kind, opts.kind);
          return checked;
        };
        try {
          for (const [data, filename] of [[JPEG, 'scan.jpg'], [CHEST_PNG, 'scan.png'], [deflated, 'scan.dcm']] as const) {
            const res = await upload(doctorA, { data, filename, fields: newPatientFields() });
            assert.equal(res.statusCode, 201, res.body);
          }
        } finally {
          t.ctx.imaging.check = check;
        }
        assert.deepEqual(told, ['jpeg', 'png', 'dicom']);
      });

      test('a JPEG for a new patient creates the patient, assigned to the uploader, and stores its original alone', async () => {
        const fields = newPatientFields({ scanDate: '2025-05-01T15:30:00.000Z' });
        const res = await upload(doctorA, { data: JPEG, fields });
        assert.equal(res.statusCode, 201, res.body);
        const scan = res.json();
        assert.deepEqual(Object.keys(scan).sort(), [
          '_id',
          'imageUrl',
          'patientId',
          'patientName',
          'scanDate',
          'scanType',
          'status',
          'thumbnailUrl',
        ]);
        assert.equal(scan.patientId, fields.patientId);
        assert.equal(scan.patientName, 'Priya Mehta');
        assert.equal(scan.scanDate, '2025-05-01T15:30:00.000Z');
        assert.equal(scan.scanType, null);
        assert.equal(scan.status, 'processing');
        assert.match(scan.imageUrl, new RegExp(`^http://imagemedix\\.test/files/${scanFileKey(scan._id, 'image.png').replaceAll('.', '\\.')}\\?expires=\\d+&user=${doctorA.id}&signature=`));
        assert.match(scan.thumbnailUrl, /^http:\/\/imagemedix\.test\/files\/scans\/[0-9a-f]{2}\/.+\.thumb\.png\?expires=/);

        // One file: the display image and thumbnail are rendered by their first reader (renditions.test.ts).
        const stored = (await readdir(path.join(t.ctx.config.dataDir, 'files'), { recursive: true })).filter((f) => f.includes(scan._id));
        assert.deepEqual(stored, [path.join('scans', scan._id.slice(0, 2), `${scan._id}.original.jpg`)]);
        const patient = await get(doctorA, `/api/patients/${fields.patientId}`);
        assert.equal(patient.statusCode, 200);
        assert.equal(patient.json().name, 'Priya Mehta');
        assert.deepEqual(
          patient.json().assignedDoctors.map((d: { _id: string }) => d._id),
          [doctorA.id],
        );
        assert.deepEqual(
          patient.json().scans.map((s: { _id: string }) => s._id),
          [scan._id],
        );
      });

      test('the signed image and thumbnail links work without a bearer token, as private PNGs', async () => {
        const scan = await uploadJpeg(doctorA);
        const image = await get(null, localPath(scan.imageUrl));
        assert.equal(image.statusCode, 200);
        assert.equal(image.headers['content-type'], 'image/png');
        assert.equal(image.headers['cache-control'], 'no-store');
        const detail = (await get(doctorA, `/api/scans/${scan._id}`)).json();
        assert.deepEqual(await pngSize(image.rawPayload), { width: detail.width, height: detail.height, format: 'png' });

        const thumb = await get(null, localPath(scan.thumbnailUrl));
        assert.equal(thumb.statusCode, 200);
        const size = await pngSize(thumb.rawPayload);
        assert.ok(size.width <= 256 && size.height <= 256, `thumbnail is ${size.width}x${size.height}`);
        assert.ok(size.width === 256 || size.height === 256 || detail.width < 256);
      });

      test('a known scanType queues the analysis: status processing, job created', async () => {
        const scan = await uploadJpeg(doctorA, { scanType: 'brain-mri' });
        assert.equal(scan.status, 'processing');
        assert.equal(scan.scanType, 'brain-mri');
        const status = await get(doctorA, `/api/scans/${scan._id}/status`);
        assert.equal(status.statusCode, 200);
        assert.equal(status.json().status, 'processing');
        assert.equal(status.json().jobStatus.state, 'waiting');
        assert.equal(status.json().jobStatus.progress, 0);
        const rows = await t.ctx.db.select().from(analyses).where(eq(analyses.scanId, scan._id));
        assert.equal(rows.length, 1);
        assert.ok(rows[0]!.jobId);
      });

      test('without a scanType the upload is queued too, its type to be decided from the image', async () => {
        const scan = await uploadJpeg(doctorA);
        assert.equal(scan.status, 'processing');
        assert.equal(scan.scanType, null);
        const status = (await get(doctorA, `/api/scans/${scan._id}/status`)).json();
        assert.equal(status.status, 'processing');
        assert.equal(status.jobStatus.state, 'waiting');
        const rows = await t.ctx.db.select().from(analyses).where(eq(analyses.scanId, scan._id));
        assert.equal(rows.length, 1);
        assert.equal(rows[0]!.scanType, null);
      });

      test('a PNG is accepted whatever the client calls it', async () => {
        const res = await upload(doctorA, {
          data: CHEST_PNG,
          filename: 'xray.dcm',
          contentType: 'application/octet-stream',
          fields: newPatientFields({ scanType: 'chest-xray' }),
        });
        assert.equal(res.statusCode, 201, res.body);
        assert.ok(await t.ctx.storage.exists(scanFileKey(res.json()._id, 'original.png')));
      });

      test('a DICOM file fills patientId, patientName, scanDate and scanType from its header', async () => {
        const res = await upload(doctorA, { data: DICOM_MR_SMALL, filename: 'scan.dcm', contentType: 'application/dicom' });
        assert.equal(res.statusCode, 201, res.body);
        const scan = res.json();
        assert.equal(scan.patientId, '4MR1');
        assert.equal(scan.patientName, 'MR1 CompressedSamples');
        assert.equal(scan.scanDate, '2004-08-26T00:00:00.000Z');
        assert.equal(scan.scanType, 'brain-mri');
        assert.equal(scan.status, 'processing');
        assert.ok(await t.ctx.storage.exists(scanFileKey(scan._id, 'original.dcm')));
        const detail = (await get(doctorA, `/api/scans/${scan._id}`)).json();
        assert.equal(detail.originalFormat, 'dicom');
        assert.equal(detail.dicom.modality, 'MR');
        assert.deepEqual([detail.width, detail.height], [64, 64]);
      });

      test('form fields win over the DICOM header, its PatientID and PatientName once confirmed', async () => {
        const fields = newPatientFields({ scanDate: '2024-01-02', scanType: 'chest-xray', confirmDicomPatientId: '4MR1', confirmDicomPatientName: 'MR1 CompressedSamples' });
        const res = await upload(doctorA, { data: DICOM_MR_SMALL, filename: 'a.dcm', fields });
        assert.equal(res.statusCode, 201, res.body);
        assert.equal(res.json().patientId, fields.patientId);
        assert.equal(res.json().patientName, fields.patientName);
        assert.equal(res.json().scanDate, '2024-01-02T00:00:00.000Z');
        assert.equal(res.json().scanType, 'chest-xray');
      });

      test('every file of the DICOM edge set gets its image or a clear error, as pinned here', async () => {
        // What a reference toolkit makes of each file (the set's MANIFEST.txt: dcmtk, GDCM)
        // decides the expected answer: an image of that size, or an error that says why.
        const expected: Record<string, { width: number; height: number; channels: number } | { status: number; error: RegExp }> = {
          'JPEG2000-embedded-sequence-delimiter.dcm': { status: 400, error: /corrupt.*JPEG 2000/ },
          'MR-SIEMENS-DICOM-WithOverlays.dcm': { width: 484, height: 484, channels: 1 },
          'MR_small_bigendian.dcm': { width: 64, height: 64, channels: 1 },
          'MR_small_implicit.dcm': { width: 64, height: 64, channels: 1 },
          'MR_truncated.dcm': { status: 400, error: /truncated/ },
          'SC_rgb_small_odd.dcm': { width: 3, height: 3, channels: 3 },
          'bad_sequence.dcm': { width: 512, height: 512, channels: 1 },
          'emri_small_jpeg_2k_lossless_too_short.dcm': { width: 64, height: 64, channels: 1 },
          'explicit_VR-UN.dcm': { width: 512, height: 512, channels: 1 },
          'image_dfl.dcm': { width: 512, height: 512, channels: 1 },
          'meta_missing_tsyntax.dcm': { status: 400, error: /Rows and Columns/ },
          'no_meta.dcm': { status: 415, error: /not a JPEG, PNG or DICOM/ },
        };
        const files = readdirSync(EDGE_DIR).filter((f) => f.endsWith('.dcm')).sort();
        assert.deepEqual(files, Object.keys(expected).sort(), 'the edge set changed: pin the new files here');
        const rendered: Record<string, Buffer> = {};
        for (const file of files) {
          const res = await upload(doctorA, {
            data: readFileSync(path.join(EDGE_DIR, file)),
            filename: file,
            contentType: 'application/dicom',
            fields: newPatientFields(await confirmHeaderPatient(readFileSync(path.join(EDGE_DIR, file)))),
          });
          const want = expected[file]!;
          if ('status' in want) {
            assert.equal(res.statusCode, want.status, `${file}: ${res.body}`);
            assert.match(res.json().error, want.error, file);
            continue;
          }
          assert.equal(res.statusCode, 201, `${file}: ${res.body}`);
          const image = await get(null, localPath(res.json().imageUrl));
          assert.equal(image.statusCode, 200, file);
          const png = await pngPixels(image.rawPayload);
          assert.deepEqual([png.width, png.height, png.channels], [want.width, want.height, want.channels], file);
          // A real picture, not a blank frame: the pixel values vary.
          assert.ok(new Set(png.data).size > 2, `${file} rendered nearly uniform`);
          rendered[file] = png.data;
        }
        // One slice in two encodings (big endian, implicit VR) renders to the same pixels.
        assert.ok(rendered['MR_small_bigendian.dcm']!.equals(rendered['MR_small_implicit.dcm']!));
      });

      test('a text file named .png with an image/png Content-Type is refused with 415', async () => {
        const res = await upload(doctorA, {
          data: Buffer.from('hello, this is not an image\n'.repeat(10)),
          filename: 'scan.png',
          contentType: 'image/png',
          fields: newPatientFields(),
        });
        assert.equal(res.statusCode, 415);
        assert.match(res.json().error, /not a JPEG, PNG or DICOM/);
      });

      test('a file over MAX_UPLOAD_MB is refused with 413', async () => {
        const big = Buffer.concat([JPEG, Buffer.alloc(1024 * 1024 + 10, 1)]);
        const res = await upload(doctorA, { data: big, fields: newPatientFields() });
        assert.equal(res.statusCode, 413);
        assert.match(res.json().error, /1 MB/);
      });

      test('an image bomb (huge pixel count in a tiny file) is refused before decoding', async () => {
        const res = await upload(doctorA, { data: pngClaiming(60_000, 60_000), filename: 'bomb.png', fields: newPatientFields() });
        assert.equal(res.statusCode, 413);
        assert.match(res.json().error, /60000x60000/);
      });

      test('a truncated JPEG gets a 400 that says the file is damaged', async () => {
        const res = await upload(doctorA, { data: JPEG.subarray(0, Math.floor(JPEG.length / 2)), fields: newPatientFields() });
        assert.equal(res.statusCode, 400);
        assert.match(res.json().error, /corrupt|truncated|incomplete|damaged/i);
      });

      test('a failed upload leaves neither a row, nor a patient, nor a file', async () => {
        const scansDir = path.join(t.dataDir, 'files/scans');
        const storedFiles = async () =>
          (await readdir(scansDir, { recursive: true, withFileTypes: true }).catch(() => [])).filter((f) => f.isFile()).length;
        const before = await storedFiles();
        const events = t.ctx.events;
        // The upload's one statement fails (a body its database refuses: the NUL) and so would
        // the transaction's event, after the patient and scan rows were written in either.
        t.ctx.events = {
          ...events,
          async publish() {
            throw new Error('event store down');
          },
          deliveryValues: (event) => ({ ...events.deliveryValues(event), event_body_head: 'event store down\u0000' }),
        };
        const fields = newPatientFields();
        try {
          const res = await upload(doctorA, { data: JPEG, fields });
          assert.equal(res.statusCode, 500);
          assert.doesNotMatch(res.body, /event store down/);
        } finally {
          t.ctx.events = events;
        }
        assert.equal(await storedFiles(), before);
        assert.equal((await get(doctorA, `/api/patients/${fields.patientId}`)).statusCode, 404);
      });

      test('form problems get a 400 naming the field', async () => {
        const cases: Array<[UploadOptions, RegExp]> = [
          [{ data: JPEG, fields: { patientName: 'No Id' } }, /"patientId" is required/],
          [{ data: JPEG, fields: { patientId: uniqueId() } }, /"patientName" is required/],
          [{ data: JPEG, fields: newPatientFields({ scanType: 'knee-ct' }) }, /scanType must be one of brain-mri, chest-xray/],
          [{ data: JPEG, fields: newPatientFields({ scanDate: 'yesterday' }) }, /scanDate/],
          [{ data: JPEG, fields: newPatientFields({ scanDate: '2025-02-30' }) }, /scanDate/],
          [{ data: JPEG, fields: newPatientFields({ scanDate: '2999-01-01' }) }, /scanDate cannot be in the future/],
          [{ data: JPEG, fields: { ...newPatientFields(), patientId: 'bad id with spaces' } }, /patientId/],
          [{ data: JPEG, fields: newPatientFields({ notes: 'x' }) }, /"notes" is not allowed/],
          [{ data: Buffer.alloc(0), fields: newPatientFields() }, /empty/],
        ];
        for (const [opts, message] of cases) {
          const res = await upload(doctorA, opts);
          assert.equal(res.statusCode, 400, `${message}: ${res.body}`);
          assert.match(res.json().error, message);
        }
        const noFile = multipart([{ name: 'patientId', value: uniqueId() }]);
        const res = await t.app.inject({ method: 'POST', url: '/api/scans', headers: { ...noFile.headers, ...doctorA.auth }, payload: noFile.payload });
        assert.equal(res.statusCode, 400);
        assert.match(res.json().error, /"image" is required/);
        const wrongField = multipart([{ name: 'file', filename: 'a.jpg', contentType: 'image/jpeg', data: JPEG }]);
        const res2 = await t.app.inject({ method: 'POST', url: '/api/scans', headers: { ...wrongField.headers, ...doctorA.auth }, payload: wrongField.payload });
        assert.equal(res2.statusCode, 400);
        assert.match(res2.json().error, /"image"/);
      });

      test('a JSON body instead of a form is refused with 415', async () => {
        const res = await send(doctorA, 'POST', '/api/scans', { patientId: uniqueId(), image: 'abc' });
        assert.equal(res.statusCode, 415);
        assert.match(res.json().error, /multipart\/form-data/);
      });

      test("a doctor cannot add scans to another doctor's patient; an admin can", async () => {
        const patient = await t.patient(doctorA);
        const denied = await upload(doctorB, { data: JPEG, fields: { patientId: patient.patientId, patientName: 'X' } });
        // The same answer as creating a patient with an id in use: nothing about whose it is.
        assert.equal(denied.statusCode, 409);
        assert.match(denied.json().error, /is already in use at this site/);
        assert.ok(!denied.body.includes(patient.name) && !denied.body.includes(patient._id));
        const byAdmin = await upload(admin, { data: JPEG, fields: { patientId: patient.patientId } });
        assert.equal(byAdmin.statusCode, 201, byAdmin.body);
        assert.equal(byAdmin.json().patientName, patient.name);
        // The patient's doctor sees the admin's upload.
        assert.equal((await get(doctorA, `/api/scans/${byAdmin.json()._id}`)).statusCode, 200);
      });
    });

    describe('reading and access', () => {
      test('unauthenticated requests get 401', async () => {
        const scan = await uploadJpeg(doctorA);
        const id = scan._id;
        const requests = [
          upload(null, { data: JPEG, fields: newPatientFields() }),
          get(null, '/api/scans'),
          get(null, `/api/scans/${id}`),
          get(null, `/api/scans/${id}/status`),
          send(null, 'PATCH', `/api/scans/${id}`, { status: 'completed' }),
          send(null, 'POST', `/api/scans/${id}/annotations`, { x: 1, y: 1, text: 'x' }),
          send(null, 'POST', `/api/scans/${id}/report`),
          send(null, 'DELETE', `/api/scans/${id}`),
        ];
        for (const res of await Promise.all(requests)) assert.equal(res.statusCode, 401, `${res.raw.req.url}`);
      });

      test("another doctor gets 404 for every route of a scan that is not theirs; admins reach it", async () => {
        const scan = await uploadJpeg(doctorA);
        const id = scan._id;
        const tries = await Promise.all([
          get(doctorB, `/api/scans/${id}`),
          get(doctorB, `/api/scans/${id}/status`),
          send(doctorB, 'PATCH', `/api/scans/${id}`, { status: 'completed' }),
          send(doctorB, 'POST', `/api/scans/${id}/annotations`, { x: 1, y: 1, text: 'x' }),
          send(doctorB, 'POST', `/api/scans/${id}/report`),
          get(doctorB, `/api/scans/${id}/pixels`),
          get(doctorB, `/api/scans/events?ids=${id}`),
        ]);
        for (const res of tries) {
          assert.equal(res.statusCode, 404);
          assert.deepEqual(res.json(), { error: 'Scan not found' });
        }
        const absent = await get(doctorB, '/api/scans/00000000-0000-4000-8000-000000000000');
        assert.deepEqual(absent.json(), { error: 'Scan not found' });
        assert.equal((await get(doctorB, '/api/scans/not-a-uuid')).statusCode, 404);
        assert.equal((await get(admin, `/api/scans/${id}`)).statusCode, 200);
        const list = (await get(doctorB, `/api/scans?limit=100`)).json();
        assert.ok(!list.scans.some((s: { _id: string }) => s._id === id));
      });

      test('GET /api/scans/:id populates the doctor and shows annotations, result and review', async () => {
        const scan = await uploadJpeg(doctorA);
        const res = await get(doctorA, `/api/scans/${scan._id}`);
        assert.equal(res.statusCode, 200);
        const body = res.json();
        assert.deepEqual(body.doctorId, { _id: doctorA.id, name: doctorA.name, email: doctorA.email });
        assert.deepEqual(body.annotations, []);
        assert.equal(body.result, null);
        assert.equal(body.modelResult, null);
        assert.equal(body.review, null);
        assert.equal(body.patient.patientId, scan.patientId);
        assert.equal(body.originalFormat, 'jpeg');
      });

      test('the list filters by status, patient (patientId or _id) and date range, and pages', async () => {
        const patientId = uniqueId();
        const dates = ['2023-01-10T08:00:00.000Z', '2023-02-10T08:00:00.000Z', '2023-03-10T08:00:00.000Z'];
        const ids: string[] = [];
        for (const [i, scanDate] of dates.entries()) {
          const fields = { patientId, patientName: 'List Patient', scanDate, ...(i === 2 ? { scanType: 'brain-mri' } : {}) };
          const res = await upload(doctorA, { data: JPEG, fields });
          assert.equal(res.statusCode, 201, res.body);
          ids.push(res.json()._id);
        }
        const list = async (query: string) => {
          const res = await get(doctorA, `/api/scans?${query}`);
          assert.equal(res.statusCode, 200, res.body);
          return res.json();
        };
        const all = await list(`patientId=${patientId}`);
        assert.equal(all.totalScans, 3);
        assert.deepEqual(
          all.scans.map((s: { _id: string }) => s._id),
          [...ids].reverse(),
        );
        const item = all.scans[0];
        for (const key of ['_id', 'patientId', 'patientName', 'scanDate', 'scanType', 'imageUrl', 'thumbnailUrl', 'status', 'result']) {
          assert.ok(key in item, key);
        }
        const patientRowId = (await get(doctorA, `/api/patients/${patientId}`)).json()._id;
        assert.equal((await list(`patientId=${patientRowId}`)).totalScans, 3);

        // Every upload is queued; the one analysed since is the only completed one.
        assert.equal((await list(`patientId=${patientId}&status=processing`)).totalScans, 3);
        await runAnalysis(t, ids[2]!, { ...BRAIN_OUTPUT, heatmapMap: heatmapMap() });
        const completed = await list(`patientId=${patientId}&status=completed`);
        assert.deepEqual(
          completed.scans.map((s: { _id: string }) => s._id),
          [ids[2]],
        );
        assert.equal((await list(`patientId=${patientId}&status=processing`)).totalScans, 2);
        const ranged = await list(`patientId=${patientId}&startDate=2023-02-01&endDate=2023-02-10`);
        assert.deepEqual(
          ranged.scans.map((s: { _id: string }) => s._id),
          [ids[1]],
        );
        const paged = await list(`patientId=${patientId}&limit=2&page=2`);
        assert.deepEqual(
          { currentPage: paged.currentPage, totalPages: paged.totalPages, totalScans: paged.totalScans },
          { currentPage: 2, totalPages: 2, totalScans: 3 },
        );
        assert.deepEqual(
          paged.scans.map((s: { _id: string }) => s._id),
          [ids[0]],
        );
        // Another doctor's patient filters to nothing, as if absent.
        const other = await get(doctorB, `/api/scans?patientId=${patientId}`);
        assert.deepEqual(other.json(), { scans: [], currentPage: 1, totalPages: 0, totalScans: 0 });

        const bad = await get(doctorA, '/api/scans?status=done');
        assert.equal(bad.statusCode, 400);
        assert.match(bad.json().error, /status/);
        const backwards = await get(doctorA, '/api/scans?startDate=2023-03-01&endDate=2023-01-01');
        assert.equal(backwards.statusCode, 400);
      });
    });

    describe('signed links', () => {
      test('a tampered, foreign or missing signature is refused with 403', async () => {
        const a = await uploadJpeg(doctorA);
        const b = await uploadJpeg(doctorA);
        const url = new URL(a.imageUrl);
        const sig = url.searchParams.get('signature')!;
        const user = url.searchParams.get('user');
        const tampered = `${url.pathname}?expires=${url.searchParams.get('expires')}&user=${user}&signature=${tamper(sig)}`;
        assert.equal((await get(null, tampered)).statusCode, 403);
        const otherScan = `${new URL(b.imageUrl).pathname}${url.search}`;
        assert.equal((await get(null, otherScan)).statusCode, 403);
        const laterExpiry = `${url.pathname}?expires=${Number(url.searchParams.get('expires')) + 3600}&user=${user}&signature=${sig}`;
        assert.equal((await get(null, laterExpiry)).statusCode, 403);
        const bare = await get(null, url.pathname);
        assert.equal(bare.statusCode, 403);
        assert.match(bare.json().error, /not valid/);
        // The original file is never served by link.
        const original = t.ctx.signer.sign(`/files/${scanFileKey(a._id, 'original.jpg')}`, null, { userId: doctorA.id });
        assert.equal((await get(null, original)).statusCode, 403);
      });

      test('an expired link is refused with 410', async () => {
        const scan = await uploadJpeg(doctorA);
        const expired = t.ctx.signer.sign(new URL(scan.imageUrl, 'http://x').pathname, null, { userId: doctorA.id, ttlSeconds: -60 });
        const res = await get(null, expired);
        assert.equal(res.statusCode, 410);
        assert.match(res.json().error, /expired/);
      });

      test("an expired report link says how to get the report again (the scan's answer has no report link)", async () => {
        const scan = await uploadJpeg(doctorA);
        const { reportUrl } = (await send(doctorA, 'POST', `/api/scans/${scan._id}/report`)).json();
        const path = new URL(reportUrl, 'http://x').pathname;
        const res = await get(null, t.ctx.signer.sign(path, null, { userId: doctorA.id, ttlSeconds: -60 }));
        assert.equal(res.statusCode, 410);
        assert.equal(
          res.json().error,
          'This report link has expired: fetch the same path without its query with your bearer token, or generate the report again (POST /api/scans/:id/report)',
        );
        // Which works: the path with a bearer token.
        const again = await get(doctorA, path);
        assert.equal(again.statusCode, 200);
        assert.equal(again.headers['content-type'], 'application/pdf');
      });

      test('without PUBLIC_URL, links are relative paths, whatever Host the client sent', async () => {
        const local = await createTestApp('pglite', { env: { PUBLIC_URL: '' } });
        try {
          const doctor = await local.user();
          const res = await local.app.inject({ ...uploadRequest(doctor, { data: JPEG, fields: newPatientFields() }), authority: 'scans.example:8443' });
          assert.equal(res.statusCode, 201, res.body);
          assert.match(res.json().imageUrl, /^\/files\/scans\/[0-9a-f]{2}\/[0-9a-f-]{36}\.image\.png\?expires=\d+&user=[0-9a-f-]{36}&signature=/);
          assert.equal((await local.app.inject({ url: res.json().imageUrl })).statusCode, 200);
        } finally {
          await local.close();
        }
      });
    });

    describe('annotations', () => {
      test('an annotation inside the image is recorded with its author and time', async () => {
        const scan = await uploadJpeg(doctorA);
        const { width, height } = (await get(doctorA, `/api/scans/${scan._id}`)).json();
        const res = await send(doctorA, 'POST', `/api/scans/${scan._id}/annotations`, {
          x: width - 1,
          y: 0,
          text: 'Tumor boundary',
        });
        assert.equal(res.statusCode, 201, res.body);
        const body = res.json();
        assert.equal(body._id, scan._id);
        assert.equal(body.annotations.length, 1);
        const [a] = body.annotations;
        assert.deepEqual({ x: a.x, y: a.y, text: a.text, createdBy: a.createdBy }, {
          x: width - 1,
          y: 0,
          text: 'Tumor boundary',
          createdBy: { _id: doctorA.id, name: doctorA.name },
        });
        assert.ok(Math.abs(Date.parse(a.createdAt) - Date.now()) < 60_000);
        const second = await send(admin, 'POST', `/api/scans/${scan._id}/annotations`, { x: 1.5, y: height - 1, text: 'Second' });
        assert.deepEqual(
          second.json().annotations.map((n: { text: string }) => n.text),
          ['Tumor boundary', 'Second'],
        );
        assert.equal((await get(doctorA, `/api/scans/${scan._id}`)).json().annotations.length, 2);
      });

      test('coordinates outside the image and missing text get a 400 naming the field', async () => {
        const scan = await uploadJpeg(doctorA);
        const { width, height } = (await get(doctorA, `/api/scans/${scan._id}`)).json();
        const cases: Array<[object, RegExp]> = [
          [{ x: width, y: 0, text: 'a' }, new RegExp(`^x must be between 0 and ${width - 1}`)],
          [{ x: 0, y: height, text: 'a' }, new RegExp(`^y must be between 0 and ${height - 1}`)],
          [{ x: -1, y: 0, text: 'a' }, /x/],
          [{ x: 0, y: 0 }, /"text" is required/],
          [{ x: 0, y: 0, text: '   ' }, /text must not be blank/],
          [{ x: 'left', y: 0, text: 'a' }, /x/],
        ];
        for (const [payload, message] of cases) {
          const res = await send(doctorA, 'POST', `/api/scans/${scan._id}/annotations`, payload);
          assert.equal(res.statusCode, 400, JSON.stringify(payload));
          assert.match(res.json().error, message);
        }
      });
    });

    describe('analysis result and review', () => {
      test("the model's result shows with a signed heatmap; a review is stored beside it and never overwrites it", async () => {
        const scan = await uploadJpeg(doctorA, { scanType: 'brain-mri' });
        await runAnalysis(t, scan._id, { ...BRAIN_OUTPUT, heatmapMap: heatmapMap() });

        const analysed = (await get(doctorA, `/api/scans/${scan._id}`)).json();
        assert.equal(analysed.status, 'completed');
        const { heatmapUrl, ...result } = analysed.result;
        assert.deepEqual(result, {
          hasTumor: true,
          tumorType: 'glioma',
          confidence: 0.91,
          probabilities: BRAIN_OUTPUT.result.probabilities,
          tumorLocation: 'upper right',
          model: { id: 'brain-mri-resnet', version: '1.2.0' },
          operatingPoint: 'argmax',
          calibration: 'model',
          region: BRAIN_OUTPUT.hotRegion,
        });
        assert.match(heatmapUrl, /^http:\/\/imagemedix\.test\/files\/scans\/[0-9a-f]{2}\/.+\.heatmap-.+\.png\?expires=/);
        assert.equal((await get(null, localPath(heatmapUrl))).statusCode, 200);
        assert.deepEqual(analysed.modelResult, analysed.result);
        const listed = (await get(doctorA, `/api/scans?patientId=${scan.patientId}`)).json();
        assert.equal(listed.scans[0].result.tumorType, 'glioma');

        const review = await send(doctorA, 'PATCH', `/api/scans/${scan._id}`, {
          status: 'completed',
          result: { tumorType: 'meningioma', confidence: 0.8, additionalNotes: 'Well-defined, minimal edema.' },
        });
        assert.equal(review.statusCode, 200, review.body);
        const reviewed = review.json();
        assert.equal(reviewed.result.tumorType, 'meningioma');
        assert.equal(reviewed.result.confidence, 0.8);
        assert.equal(reviewed.result.additionalNotes, 'Well-defined, minimal edema.');
        assert.equal(reviewed.result.hasTumor, true);
        assert.equal(reviewed.modelResult.tumorType, 'glioma');
        assert.equal(reviewed.modelResult.confidence, 0.91);
        assert.deepEqual(reviewed.review.reviewedBy, { _id: doctorA.id, name: doctorA.name });
        assert.ok(Math.abs(Date.parse(reviewed.review.reviewedAt) - Date.now()) < 60_000);

        // A second review builds on the first; the stored model output is untouched.
        const second = await send(admin, 'PATCH', `/api/scans/${scan._id}`, { result: { hasTumor: false, confidence: null } });
        assert.equal(second.statusCode, 200, second.body);
        assert.equal(second.json().result.hasTumor, false);
        assert.equal(second.json().result.tumorType, null);
        assert.equal(second.json().result.confidence, null);
        assert.equal(second.json().result.additionalNotes, 'Well-defined, minimal edema.');
        assert.deepEqual(second.json().review.reviewedBy, { _id: admin.id, name: admin.name });
        const [row] = await t.ctx.db.select().from(analyses).where(eq(analyses.scanId, scan._id));
        assert.equal(row!.result!.scanType === 'brain-mri' && row!.result!.tumorType, 'glioma');
        assert.equal(row!.result!.confidence, 0.91);
      });

      test('a refused analysis leaves the scan failed with the reason', async () => {
        const scan = await uploadJpeg(doctorA, { scanType: 'chest-xray' });
        await runAnalysis(t, scan._id, {
          refused: true,
          reason: 'This image does not look like a chest X-ray.',
          model: { id: 'chest', version: '1' },
        });
        const detail = (await get(doctorA, `/api/scans/${scan._id}`)).json();
        assert.equal(detail.status, 'failed');
        assert.equal(detail.failureReason, 'This image does not look like a chest X-ray.');
        assert.equal(detail.result, null);
        // A final answer a poller stops on, not the stage the refusal interrupted.
        const status = (await get(doctorA, `/api/scans/${scan._id}/status`)).json();
        assert.deepEqual(status, {
          status: 'failed',
          failureReason: 'This image does not look like a chest X-ray.',
          jobStatus: { state: 'failed', progress: 100, stage: null },
        });
        const ml = (await get(doctorA, `/api/ml/status/${scan._id}`)).json();
        assert.deepEqual(ml, { status: 'failed', progress: 100, estimatedCompletionTime: null, state: 'failed', stage: null });
      });

      test('review validation: fields of the other scan type, contradictions and unknown fields are 400', async () => {
        const chest = await uploadJpeg(doctorA, { scanType: 'chest-xray' });
        const cases: Array<[object, RegExp]> = [
          [{ result: { hasTumor: true } }, /hasTumor does not apply to a chest-xray scan/],
          [{ result: { hasPneumonia: false, pneumoniaType: 'viral' } }, /pneumoniaType must be null/],
          [{ result: { confidence: 1.5 } }, /confidence/],
          [{ status: 'processing' }, /status/],
          [{ result: { diagnosis: 'x' } }, /"result.diagnosis" is not allowed/],
          [{}, /at least one field/],
        ];
        for (const [payload, message] of cases) {
          const res = await send(doctorA, 'PATCH', `/api/scans/${chest._id}`, payload);
          assert.equal(res.statusCode, 400, JSON.stringify(payload));
          assert.match(res.json().error, message);
        }
        const ok = await send(doctorA, 'PATCH', `/api/scans/${chest._id}`, {
          status: 'completed',
          result: { pneumoniaType: 'viral' },
        });
        assert.equal(ok.statusCode, 200, ok.body);
        assert.equal(ok.json().status, 'completed');
        assert.deepEqual(
          { hasPneumonia: ok.json().result.hasPneumonia, pneumoniaType: ok.json().result.pneumoniaType },
          { hasPneumonia: true, pneumoniaType: 'viral' },
        );
        assert.equal(ok.json().modelResult, null);
      });
    });

    describe('reports', () => {
      test('a report is a real PDF with patient, finding, model, review, annotations and the notice', async () => {
        const patientId = uniqueId();
        const res = await upload(doctorA, {
          data: JPEG,
          fields: { patientId, patientName: 'Raj Sharma', scanType: 'brain-mri', scanDate: '2025-05-01' },
        });
        const scan = res.json();
        await runAnalysis(t, scan._id, { ...BRAIN_OUTPUT, heatmapMap: heatmapMap() });
        await send(doctorA, 'POST', `/api/scans/${scan._id}/annotations`, { x: 5, y: 5, text: 'Possible secondary lesion' });
        await send(doctorA, 'PATCH', `/api/scans/${scan._id}`, { result: { additionalNotes: 'Confirmed on review.' } });

        const report = await send(doctorA, 'POST', `/api/scans/${scan._id}/report`);
        assert.equal(report.statusCode, 201, report.body);
        assert.equal(report.json().message, 'Report generated successfully');
        const reportUrl: string = report.json().reportUrl;
        assert.match(reportUrl, new RegExp(`^http://imagemedix\\.test/reports/report-${scan._id}-[0-9a-f-]{36}\\.pdf\\?expires=\\d+&user=${doctorA.id}&signature=`));

        const pdf = await get(null, localPath(reportUrl));
        assert.equal(pdf.statusCode, 200);
        assert.equal(pdf.headers['content-type'], 'application/pdf');
        assert.equal(pdf.headers['cache-control'], 'no-store');
        assert.equal(pdf.rawPayload.subarray(0, 5).toString(), '%PDF-');
        const text = (await pdfText(pdf.rawPayload)).replace(/\s+/g, ' ');
        for (const expected of [
          'NOT FOR DIAGNOSTIC USE WITHOUT PHYSICIAN REVIEW',
          'Raj Sharma',
          patientId,
          scan._id,
          'Glioma',
          '91',
          'brain-mri-resnet',
          '1.2.0',
          'Possible secondary lesion',
          doctorA.name,
          'Confirmed on review.',
        ]) {
          assert.ok(text.toLowerCase().includes(expected.toLowerCase()), `report mentions "${expected}"`);
        }

        const tampered = localPath(reportUrl).replace(/signature=([^&]+)/, (_, sig: string) => `signature=${tamper(sig)}`);
        assert.equal((await get(null, tampered)).statusCode, 403);
      });

      test('asking again when nothing changed returns the stored report; a change makes a new one and earlier ones are kept', async () => {
        const scan = await uploadJpeg(doctorA, { scanType: 'brain-mri' });
        await runAnalysis(t, scan._id, { ...BRAIN_OUTPUT, heatmapMap: heatmapMap() });
        const reportOf = async (user: TestUser) => {
          const res = await send(user, 'POST', `/api/scans/${scan._id}/report`);
          const body = res.json();
          assert.deepEqual(Object.keys(body).sort(), ['message', 'reportUrl'], res.body);
          const id = new RegExp(`/reports/report-${scan._id}-([0-9a-f-]{36})\\.pdf`).exec(body.reportUrl)?.[1];
          return { status: res.statusCode, message: body.message as string, id, url: body.reportUrl as string };
        };
        const storedReports = async () => (await t.ctx.db.select().from(reports).where(eq(reports.scanId, scan._id))).length;

        const first = await reportOf(doctorA);
        assert.equal(first.status, 201);
        const again = await reportOf(doctorA);
        assert.equal(again.status, 200);
        assert.equal(again.id, first.id, 'the stored report');
        assert.match(again.message, /^Nothing has changed since the report generated at \d{4}-\d\d-\d\dT[\d:.]+Z; that report is returned$/);
        assert.equal((await get(null, localPath(again.url))).statusCode, 200, 'its link works');
        assert.equal(await storedReports(), 1);

        await send(doctorA, 'POST', `/api/scans/${scan._id}/annotations`, { x: 5, y: 5, text: 'Rim enhancement' });
        const annotated = await reportOf(doctorA);
        assert.equal(annotated.status, 201, 'an annotation was added');
        assert.notEqual(annotated.id, first.id);
        assert.equal((await reportOf(doctorA)).id, annotated.id);

        await send(doctorA, 'PATCH', `/api/scans/${scan._id}`, { status: 'completed', result: { additionalNotes: 'Agree.' } });
        const reviewed = await reportOf(doctorA);
        assert.equal(reviewed.status, 201, 'the scan was reviewed');
        // The report names who generated it: another reader's is another report.
        assert.equal((await reportOf(admin)).status, 201);
        assert.equal(await storedReports(), 4);
        assert.equal((await get(null, localPath(first.url))).statusCode, 200, 'the first report is kept');
      });

      test('identical report requests that cross (a double click) store one report; every answer links to it', async () => {
        const scan = await uploadJpeg(doctorA, { scanType: 'brain-mri' });
        await runAnalysis(t, scan._id, { ...BRAIN_OUTPUT, heatmapMap: heatmapMap() });
        const answers = await Promise.all(Array.from({ length: 4 }, () => send(doctorA, 'POST', `/api/scans/${scan._id}/report`)));
        assert.deepEqual(answers.map((a) => a.statusCode).sort(), [200, 200, 200, 201], answers.map((a) => a.body).join('\n'));
        const ids = new Set(answers.map((a) => /report-[0-9a-f-]{36}-([0-9a-f-]{36})\.pdf/.exec(a.json().reportUrl)?.[1]));
        assert.equal(ids.size, 1, 'one report');
        assert.equal((await t.ctx.db.select().from(reports).where(eq(reports.scanId, scan._id))).length, 1);
        const files = (await readdir(path.join(t.ctx.config.dataDir, 'files'), { recursive: true })).filter((f) => f.includes(scan._id) && f.endsWith('.pdf'));
        assert.equal(files.length, 1, `no copy left in storage: ${files.join(', ')}`);
      });

      test('a scan without analysis still gets a report that says so', async () => {
        const scan = await uploadJpeg(doctorA);
        const report = await send(doctorA, 'POST', `/api/scans/${scan._id}/report`);
        assert.equal(report.statusCode, 201, report.body);
        const pdf = await get(null, localPath(report.json().reportUrl));
        const text = (await pdfText(pdf.rawPayload)).replace(/\s+/g, ' ');
        assert.match(text, /not been analysed/);
        assert.match(text, /Not yet reviewed by a physician/);
      });
    });

    describe('round trip', () => {
      test('upload, list, get, annotate, review, report, delete', async () => {
        const patientId = uniqueId();
        const uploaded = await upload(doctorA, {
          data: DICOM_MR_SMALL,
          filename: 'slice.dcm',
          contentType: 'application/dicom',
          fields: { patientId, patientName: 'Anita Rao', scanType: 'brain-mri', confirmDicomPatientId: '4MR1', confirmDicomPatientName: 'MR1 CompressedSamples' },
        });
        assert.equal(uploaded.statusCode, 201, uploaded.body);
        const id = uploaded.json()._id;

        const list = (await get(doctorA, `/api/scans?patientId=${patientId}`)).json();
        assert.deepEqual(list.scans.map((s: { _id: string }) => s._id), [id]);
        assert.equal(list.totalScans, 1);

        const detail = (await get(doctorA, `/api/scans/${id}`)).json();
        assert.equal(detail.patientName, 'Anita Rao');
        assert.equal(detail.originalFormat, 'dicom');
        assert.deepEqual(detail.doctorId, { _id: doctorA.id, name: doctorA.name, email: doctorA.email });
        await runAnalysis(t, id, { ...BRAIN_OUTPUT, heatmapMap: heatmapMap() });

        const note = await send(doctorA, 'POST', `/api/scans/${id}/annotations`, { x: 10, y: 20, text: 'Enhancing rim' });
        assert.equal(note.statusCode, 201, note.body);
        const reviewed = await send(doctorA, 'PATCH', `/api/scans/${id}`, { status: 'completed', result: { additionalNotes: 'Agree.' } });
        assert.equal(reviewed.statusCode, 200, reviewed.body);

        const report = await send(doctorA, 'POST', `/api/scans/${id}/report`);
        assert.equal(report.statusCode, 201, report.body);
        const text = (await pdfText((await get(null, localPath(report.json().reportUrl))).rawPayload)).replace(/\s+/g, ' ');
        for (const expected of ['Anita Rao', 'Enhancing rim', 'Agree.', 'Glioma']) assert.ok(text.includes(expected), expected);

        assert.equal((await send(admin, 'DELETE', `/api/scans/${id}`)).statusCode, 200);
        assert.equal((await get(doctorA, `/api/scans?patientId=${patientId}`)).json().totalScans, 0);
        assert.equal((await get(null, localPath(report.json().reportUrl))).statusCode, 404);
      });
    });

    describe('delete', () => {
      test('only admins delete; the row, its files and its reports go', async () => {
        const scan = await uploadJpeg(doctorA, { scanType: 'brain-mri' });
        const report = await send(doctorA, 'POST', `/api/scans/${scan._id}/report`);
        assert.equal(report.statusCode, 201);

        const byDoctor = await send(doctorA, 'DELETE', `/api/scans/${scan._id}`);
        assert.equal(byDoctor.statusCode, 403);
        const res = await send(admin, 'DELETE', `/api/scans/${scan._id}`);
        assert.equal(res.statusCode, 200);
        assert.deepEqual(res.json(), { message: 'Scan deleted successfully' });

        assert.equal((await get(doctorA, `/api/scans/${scan._id}`)).statusCode, 404);
        assert.equal((await t.ctx.db.select().from(scans).where(eq(scans.id, scan._id))).length, 0);
        assert.equal((await t.ctx.db.select().from(analyses).where(eq(analyses.scanId, scan._id))).length, 0);
        for (const name of ['original.jpg', 'image.png', 'thumb.png']) {
          assert.equal(await t.ctx.storage.exists(scanFileKey(scan._id, name)), false, name);
        }
        assert.equal((await get(null, localPath(scan.imageUrl))).statusCode, 404);
        assert.equal((await get(null, localPath(report.json().reportUrl))).statusCode, 404);
        assert.equal((await send(admin, 'DELETE', `/api/scans/${scan._id}`)).statusCode, 404);
      });

      const filesDir = () => path.join(t.ctx.config.dataDir, 'files');
      /** Every file of the scan in local storage, under any folder (its id is in its key). */
      const filesOf = async (scanId: string) =>
        (await readdir(filesDir(), { recursive: true })).filter((f) => f.includes(scanId));
      /** Uploads, analyses and reports a scan: every kind of file a scan has. */
      const scanWithEveryFile = async (fields: Record<string, string> = {}) => {
        const scan = await uploadJpeg(doctorA, { scanType: 'brain-mri', ...fields });
        await runAnalysis(t, scan._id, { ...BRAIN_OUTPUT, heatmapMap: heatmapMap() });
        const report = await send(doctorA, 'POST', `/api/scans/${scan._id}/report`);
        assert.equal(report.statusCode, 201, report.body);
        return { id: scan._id as string, reportUrl: report.json().reportUrl as string };
      };
      /** Moves a scan's files to the layout of scans stored before the shard folders, rows included. */
      const toLegacyLayout = async (scanId: string) => {
        const storage = t.ctx.storage;
        const move = async (key: string, legacy: string) => {
          await storage.put(legacy, await storage.get(key), 'application/octet-stream');
          await storage.delete(key);
          return legacy;
        };
        const name = (key: string) => key.slice(key.indexOf(scanId) + scanId.length + 1);
        const [row] = await t.ctx.db.select().from(scans).where(eq(scans.id, scanId));
        await t.ctx.db
          .update(scans)
          .set({
            originalKey: await move(row!.originalKey, `scans/${scanId}/${name(row!.originalKey)}`),
            imageKey: await move(row!.imageKey, `scans/${scanId}/image.png`),
            thumbnailKey: await move(row!.thumbnailKey, `scans/${scanId}/thumb.png`),
          })
          .where(eq(scans.id, scanId));
        for (const a of await t.ctx.db.select().from(analyses).where(eq(analyses.scanId, scanId))) {
          if (!a.heatmapKey) continue;
          const heatmapKey = await move(a.heatmapKey, `scans/${scanId}/heatmap-${a.id}.png`);
          await t.ctx.db.update(analyses).set({ heatmapKey }).where(eq(analyses.id, a.id));
        }
        for (const r of await t.ctx.db.select().from(reports).where(eq(reports.scanId, scanId))) {
          const storageKey = await move(r.storageKey, `scans/${scanId}/reports/${r.id}.pdf`);
          await t.ctx.db.update(reports).set({ storageKey }).where(eq(reports.id, r.id));
        }
        assert.ok((await filesOf(scanId)).every((f) => f.startsWith(path.join('scans', scanId))), 'only the legacy folder is left');
      };

      test('a scan\'s files sit in a shard folder named by its id, with no folder of its own', async () => {
        const { id } = await scanWithEveryFile();
        const shard = path.join('scans', id.slice(0, 2));
        const files = await filesOf(id);
        assert.deepEqual(
          files.map((f) => path.relative(shard, f).replace(/heatmap-[0-9a-f-]{36}/, 'heatmap-A').replace(/report-[0-9a-f-]{36}/, 'report-R')).sort(),
          ['original.jpg', 'image.png', 'thumb.png', 'heatmap-A.png', 'report-R.pdf'].map((n) => `${id}.${n}`).sort(),
        );
        assert.equal(readdirSync(path.join(filesDir(), 'scans')).includes(id), false, 'no folder per scan');
        // All 256 made when the server started, so no upload waits for a mkdir.
        const shards = readdirSync(path.join(filesDir(), 'scans')).filter((f) => /^[0-9a-f]{2}$/.test(f));
        assert.equal(shards.length, 256);
      });

      test('deleting a scan removes each of its files by the keys its rows name, and a heatmap not yet recorded', async () => {
        const { id, reportUrl } = await scanWithEveryFile();
        // A later analysis whose worker stored its heatmap and had not recorded it when the scan went.
        const [late] = await t.ctx.db.insert(analyses).values({ scanId: id, status: 'active' }).returning();
        await t.ctx.storage.put(scanFileKey(id, `heatmap-${late!.id}.png`), Buffer.from('png'), 'image/png');
        assert.equal((await filesOf(id)).length, 6);

        assert.equal((await send(admin, 'DELETE', `/api/scans/${id}`)).statusCode, 200);
        assert.deepEqual(await filesOf(id), []);
        assert.equal((await get(null, localPath(reportUrl))).statusCode, 404);
      });

      test('a scan stored in the older folder layout is read, linked and deleted as before', async () => {
        const { id, reportUrl } = await scanWithEveryFile();
        const before = (await get(doctorA, `/api/scans/${id}`)).json();
        const image = (await get(null, localPath(before.imageUrl))).rawPayload;
        await toLegacyLayout(id);

        const detail = (await get(doctorA, `/api/scans/${id}`)).json();
        assert.match(detail.imageUrl, new RegExp(`/files/scans/${id}/image\\.png\\?`));
        const read = await get(null, localPath(detail.imageUrl));
        assert.equal(read.statusCode, 200);
        assert.ok(read.rawPayload.equals(image));
        assert.equal((await get(null, localPath(detail.thumbnailUrl))).statusCode, 200);
        assert.equal((await get(null, localPath(detail.result.heatmapUrl))).statusCode, 200);
        assert.equal((await get(null, localPath(reportUrl))).statusCode, 200, 'the link given before still answers');
        const latest = await get(doctorA, `/reports/report-${id}.pdf`);
        assert.equal(latest.statusCode, 200);
        assert.equal(latest.headers['content-type'], 'application/pdf');

        assert.equal((await send(admin, 'DELETE', `/api/scans/${id}`)).statusCode, 200);
        assert.deepEqual(await filesOf(id), []);
        assert.equal(readdirSync(path.join(filesDir(), 'scans')).includes(id), false, 'the folder goes too');
      });

      test('deleting a patient removes the files of their scans, in either layout', async () => {
        const patientId = uniqueId();
        const sharded = await scanWithEveryFile({ patientId });
        const legacy = await scanWithEveryFile({ patientId });
        await toLegacyLayout(legacy.id);
        assert.ok((await filesOf(sharded.id)).length > 0);
        const patient = (await get(doctorA, `/api/patients/${patientId}`)).json();
        assert.equal((await send(admin, 'DELETE', `/api/patients/${patient._id}`)).statusCode, 200);
        assert.deepEqual(await filesOf(sharded.id), []);
        assert.deepEqual(await filesOf(legacy.id), []);
      });
    });
  });
}
