/**
 * Links have the API document's shape: relative paths (`/reports/report-<id>.pdf`), absolute
 * only on PUBLIC_URL. A documented path also answers a bearer token of someone who may see the
 * scan, without a signature.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { FIXTURES, heatmapMap, runAnalysis, uploadRequest } from './test-support.js';

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));

describe('file and report links', () => {
  let t: TestApp;
  let doctor: TestUser;
  let other: TestUser;
  let scan: { _id: string; imageUrl: string; thumbnailUrl: string };
  before(async () => {
    t = await createTestApp('pglite', { env: { PUBLIC_URL: '' } });
    [doctor, other] = await Promise.all([t.user(), t.user()]);
    const res = await t.app.inject(
      uploadRequest(doctor, { data: JPEG, fields: { patientId: uniqueId(), patientName: 'Priya Mehta', scanType: 'brain-mri' } }),
    );
    scan = res.json();
    await runAnalysis(t, scan._id, {
      refused: false,
      model: { id: 'brain-mri', version: '1.0.0' },
      result: {
        scanType: 'brain-mri',
        hasTumor: true,
        tumorType: 'glioma',
        confidence: 0.9,
        probabilities: { glioma: 0.9, meningioma: 0.04, notumor: 0.03, pituitary: 0.03 },
        tumorLocation: null,
        operatingPoint: 'argmax',
        calibration: 'model',
        model: { id: 'brain-mri', version: '1.0.0' },
      },
      heatmapMap: heatmapMap(),
      hotRegion: { x: 0, y: 0, width: 5, height: 5 },
    });
  });
  after(() => t.close());

  const get = (url: string, user?: TestUser | { auth: { authorization: string } }) =>
    t.app.inject({ url, headers: user?.auth ?? {} });

  test('every link is a relative signed path that works without a token, as the document shows', async () => {
    const detail = (await get(`/api/scans/${scan._id}`, doctor)).json();
    const report = await t.app.inject({ method: 'POST', url: `/api/scans/${scan._id}/report`, headers: doctor.auth });
    assert.equal(report.statusCode, 201, report.body);
    const reportUrl: string = report.json().reportUrl;
    assert.match(reportUrl, new RegExp(`^/reports/report-${scan._id}-[0-9a-f-]{36}\\.pdf\\?expires=\\d+&user=[0-9a-f-]{36}&signature=[\\w-]+$`));
    for (const link of [detail.imageUrl, detail.thumbnailUrl, detail.result.heatmapUrl, reportUrl]) {
      assert.match(link, /^\/(files|reports)\//);
      const res = await get(link);
      assert.equal(res.statusCode, 200, `${link}: ${res.body}`);
    }
  });

  test("the documented report path and a link's path answer a bearer token with access to the scan", async () => {
    const fresh = await t.app.inject(
      uploadRequest(doctor, { data: JPEG, fields: { patientId: uniqueId(), patientName: 'Raj Sharma' } }),
    );
    const none = await get(`/reports/report-${fresh.json()._id}.pdf`, doctor);
    assert.equal(none.statusCode, 404);
    assert.match(none.json().error, /No report has been generated for this scan yet/);

    const first = (await t.app.inject({ method: 'POST', url: `/api/scans/${scan._id}/report`, headers: doctor.auth })).json();
    const documented = `/reports/report-${scan._id}.pdf`;
    const pdf = await get(documented, doctor);
    assert.equal(pdf.statusCode, 200, pdf.body);
    assert.equal(pdf.headers['content-type'], 'application/pdf');
    assert.equal(pdf.rawPayload.subarray(0, 5).toString(), '%PDF-');
    assert.equal(pdf.headers['cache-control'], 'no-store');
    const pinned = await get(first.reportUrl.split('?')[0], doctor);
    assert.equal(pinned.statusCode, 200);

    const image = await get(scan.imageUrl.split('?')[0]!, doctor);
    assert.equal(image.statusCode, 200);
    assert.equal(image.headers['content-type'], 'image/png');

    // Someone else's scan answers like a missing one; no credentials, 403; a bad token, 401.
    assert.equal((await get(documented, other)).statusCode, 404);
    assert.equal((await get(scan.imageUrl.split('?')[0]!, other)).statusCode, 404);
    assert.equal((await get(documented)).statusCode, 403);
    assert.equal((await get(documented, { auth: { authorization: 'Bearer nonsense' } })).statusCode, 401);
    // A signature given is checked even with a token: a forged link never passes.
    assert.equal((await get(`${documented}?expires=9999999999&signature=forged`, doctor)).statusCode, 403);
    // A path no file has is told so to a signed-in reader, not to send the token they sent.
    for (const path of ['/reports/report-nope.pdf', `/reports/${scan._id}.pdf`, '/files/scans/zz/nope.png', `/files/scans/${scan._id}/original.jpg`]) {
      const wrong = await get(path, doctor);
      assert.equal(wrong.statusCode, 404, path);
      assert.equal(wrong.json().error, 'No scan file or report has this path: use the imageUrl, thumbnailUrl or reportUrl the API returned', path);
    }
    assert.equal((await get('/reports/report-nope.pdf')).statusCode, 403, 'without credentials as before');
  });

  test('with PUBLIC_URL, links are absolute on it', async () => {
    const withBase = await createTestApp('pglite', { env: { PUBLIC_URL: 'https://imagemedix.hospital.test' } });
    try {
      const user = await withBase.user();
      const res = await withBase.app.inject(
        uploadRequest(user, { data: JPEG, fields: { patientId: uniqueId(), patientName: 'Priya Mehta' } }),
      );
      assert.match(res.json().imageUrl, /^https:\/\/imagemedix\.hospital\.test\/files\/scans\//);
    } finally {
      await withBase.close();
    }
  });
});
