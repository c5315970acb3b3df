/**
 * What the web viewer and worklist need beyond the document's endpoints: a DICOM's original
 * pixel values for window/level, the heatmap's region box, a scan-type filter, and the live
 * status stream.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import dicomParser from 'dicom-parser';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { gliomaOutput } from '../../test/helpers/analyzer-output.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { confirmHeaderPatient, FIXTURES, heatmapMap, runAnalysis, uploadRequest } from './test-support.js';

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));
const DICOM_MR = readFileSync(path.join(FIXTURES, 'imaging/MR_small_implicit.dcm'));
const DICOM_RGB = readFileSync(path.join(FIXTURES, 'imaging/SC_rgb_small_odd.dcm'));

const BRAIN_OUTPUT = gliomaOutput();

/** Parses a server-sent event stream into its events. */
function parseEvents(body: string): { event: string; data: Record<string, unknown> }[] {
  return body
    .split('\n\n')
    .filter((block) => block.startsWith('event:'))
    .map((block) => {
      const lines = block.split('\n');
      return {
        event: lines.find((l) => l.startsWith('event: '))!.slice(7),
        data: JSON.parse(lines.find((l) => l.startsWith('data: '))!.slice(6)) as Record<string, unknown>,
      };
    });
}

for (const kind of await databaseKinds()) {
  describe(`scan viewer support (${kind})`, () => {
    let t: TestApp;
    let doctor: TestUser;
    let other: TestUser;

    before(async () => {
      t = await createTestApp(kind);
      [doctor, other] = await Promise.all([t.user(), t.user()]);
    });
    after(() => t.close());

    const upload = async (user: TestUser, data: Buffer, fields: Record<string, string> = {}) => {
      const res = await t.app.inject(
        uploadRequest(user, { data, filename: 'scan.bin', contentType: 'application/octet-stream', fields: { patientId: uniqueId(), patientName: 'Ana Lima', ...(await confirmHeaderPatient(data)), ...fields } }),
      );
      assert.equal(res.statusCode, 201, res.body);
      return res.json<{ _id: string; patientId: string; status: string }>();
    };
    const get = (user: TestUser | null, url: string) => t.app.inject({ method: 'GET', url, headers: user?.auth ?? {} });

    describe('GET /api/scans/:id/pixels', () => {
      test("gives a DICOM's stored values in modality units, not the 8-bit rendering, with the file's window", async () => {
        const scan = await upload(doctor, DICOM_MR);
        const res = await get(doctor, `/api/scans/${scan._id}/pixels`);
        assert.equal(res.statusCode, 200, res.body);
        assert.equal(res.headers['content-type'], 'application/octet-stream');
        assert.equal(res.headers['x-image-width'], '64');
        assert.equal(res.headers['x-image-height'], '64');
        assert.equal(res.headers['x-pixel-format'], 'int16');
        assert.equal(res.headers['x-window-center'], '600');
        assert.equal(res.headers['x-window-width'], '1600');
        assert.equal(res.headers['x-photometric-invert'], 'false');
        const raw = res.rawPayload;
        const values = new Int16Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
        assert.equal(values.length, 64 * 64);
        // The same samples as the file's own Pixel Data (signed 16-bit, no rescale in this file).
        const ds = dicomParser.parseDicom(new Uint8Array(DICOM_MR));
        const el = ds.elements.x7fe00010!;
        const stored = new Int16Array(DICOM_MR.buffer.slice(DICOM_MR.byteOffset + el.dataOffset, DICOM_MR.byteOffset + el.dataOffset + el.length));
        assert.deepEqual(Array.from(values), Array.from(stored));
        assert.ok(Math.max(...values) > 255, 'values keep their full range');
        assert.equal(res.headers['x-pixel-max'], String(Math.max(...values)));
      });

      test('a JPEG has no pixel data to window (409); a colour DICOM cannot be windowed (422)', async () => {
        const jpeg = await upload(doctor, JPEG);
        const res = await get(doctor, `/api/scans/${jpeg._id}/pixels`);
        assert.equal(res.statusCode, 409);
        assert.match(res.json().error, /JPEG.*imageUrl/);
        const rgb = await upload(doctor, DICOM_RGB);
        const colour = await get(doctor, `/api/scans/${rgb._id}/pixels`);
        assert.equal(colour.statusCode, 422);
        assert.match(colour.json().error, /colour/);
      });

      test("another doctor's scan answers 404 like a missing one; no token answers 401", async () => {
        const scan = await upload(doctor, DICOM_MR);
        assert.equal((await get(other, `/api/scans/${scan._id}/pixels`)).statusCode, 404);
        assert.equal((await get(other, `/api/scans/00000000-0000-4000-8000-000000000000/pixels`)).statusCode, 404);
        assert.equal((await get(null, `/api/scans/${scan._id}/pixels`)).statusCode, 401);
      });
    });

    describe('region box and scan type filter', () => {
      test("the result carries the heatmap's region in image pixels, and the list filters by scan type", async () => {
        const patientId = uniqueId();
        const brain = await upload(doctor, JPEG, { patientId, scanType: 'brain-mri' });
        await upload(doctor, JPEG, { patientId, scanType: 'chest-xray' });
        await runAnalysis(t, brain._id, { ...BRAIN_OUTPUT, heatmapMap: heatmapMap() });
        const detail = (await get(doctor, `/api/scans/${brain._id}`)).json();
        assert.deepEqual(detail.result.region, BRAIN_OUTPUT.hotRegion);
        assert.deepEqual(detail.modelResult.region, BRAIN_OUTPUT.hotRegion);

        const onlyBrain = (await get(doctor, `/api/scans?patientId=${patientId}&scanType=brain-mri`)).json();
        assert.deepEqual(onlyBrain.scans.map((s: { _id: string }) => s._id), [brain._id]);
        const onlyChest = (await get(doctor, `/api/scans?patientId=${patientId}&scanType=chest-xray`)).json();
        assert.equal(onlyChest.totalScans, 1);
        assert.equal(onlyChest.scans[0].scanType, 'chest-xray');
        const bad = await get(doctor, `/api/scans?scanType=knee`);
        assert.equal(bad.statusCode, 400);
        assert.match(bad.json().error, /scanType/);
      });
    });

    describe('GET /api/scans/events', () => {
      test('streams each scan at once, then its change to completed, then ends', async () => {
        const scan = await upload(doctor, JPEG, { scanType: 'brain-mri' });
        assert.equal(scan.status, 'processing');
        const streaming = get(doctor, `/api/scans/events?ids=${scan._id}`);
        // Let the stream send its first event, then finish the analysis as a worker would.
        await new Promise((r) => setTimeout(r, 300));
        await runAnalysis(t, scan._id, { ...BRAIN_OUTPUT, heatmapMap: heatmapMap() });
        const res = await streaming;
        assert.equal(res.statusCode, 200, res.body);
        assert.match(String(res.headers['content-type']), /^text\/event-stream/);
        const events = parseEvents(res.body);
        assert.equal(events[0]!.event, 'status');
        assert.equal(events[0]!.data._id, scan._id);
        assert.equal(events[0]!.data.status, 'processing');
        const last = events.filter((e) => e.event === 'status').at(-1)!;
        assert.equal(last.data.status, 'completed');
        assert.equal(events.at(-1)!.event, 'end');
      });

      test('finished scans end the stream at once', async () => {
        const a = await upload(doctor, JPEG, { scanType: 'brain-mri' });
        await runAnalysis(t, a._id, { ...BRAIN_OUTPUT, heatmapMap: heatmapMap() });
        const res = await get(doctor, `/api/scans/events?ids=${a._id},${a._id}`);
        const events = parseEvents(res.body);
        assert.deepEqual(
          events.map((e) => [e.event, e.data.status]),
          [
            ['status', 'completed'],
            ['end', undefined],
          ],
        );
      });

      test('a stream closes without end once its session is over (sign-out), and reconnecting is 401', async () => {
        const leaving = await t.user();
        const scan = await upload(leaving, JPEG, { scanType: 'brain-mri' });
        const streaming = get(leaving, `/api/scans/events?ids=${scan._id}`);
        await new Promise((r) => setTimeout(r, 300));
        const out = await t.app.inject({ method: 'POST', url: '/api/auth/logout', headers: leaving.auth });
        assert.ok(out.statusCode < 300, out.body);
        // Without the check the stream would follow the scan for 5 minutes.
        const res = await Promise.race([streaming, new Promise<null>((r) => setTimeout(() => r(null), 5000))]);
        assert.ok(res, 'the stream was still open 5 s after the sign-out');
        const events = parseEvents(res.body);
        assert.deepEqual(
          events.map((e) => [e.event, e.data.status]),
          [['status', 'processing']],
        );
        assert.equal((await get(leaving, `/api/scans/events?ids=${scan._id}`)).statusCode, 401);
      });

      test("a scan that is not yours is 404 before anything streams; bad ids are 400; no token is 401", async () => {
        const mine = await upload(doctor, JPEG);
        const res = await get(other, `/api/scans/events?ids=${mine._id}`);
        assert.equal(res.statusCode, 404);
        assert.deepEqual(Object.keys(res.json()), ['error']);
        const bad = await get(doctor, `/api/scans/events?ids=not-a-uuid`);
        assert.equal(bad.statusCode, 400);
        assert.match(bad.json().error, /UUID/);
        const many = Array.from({ length: 51 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`).join(',');
        assert.match((await get(doctor, `/api/scans/events?ids=${many}`)).json().error, /at most 50/);
        assert.equal((await get(null, `/api/scans/events?ids=${mine._id}`)).statusCode, 401);
      });
    });
  });
}
