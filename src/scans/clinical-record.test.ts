/**
 * A doctor's work is a clinical record: a re-analysis never hides or overwrites a review, every
 * review is kept, a typed scan keeps its type, and a review is validated and merged by rules a
 * client can read in the OpenAPI document. Also the job status every queued scan shows.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { claimAnalysis, latestAnalysisOf, reportProgress } from '../analysis/repository.js';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { FIXTURES, heatmapMap, localPath, pdfText, runAnalysis, uploadRequest } from './test-support.js';

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));
const CHEST_PNG = readFileSync(path.join(FIXTURES, 'images/chest-normal-1.png'));

const brainOutput = (tumorType: 'glioma' | 'meningioma' | 'pituitary', confidence: number, version: string) => ({
  refused: false as const,
  model: { id: 'brain-mri', version },
  result: {
    scanType: 'brain-mri' as const,
    hasTumor: true,
    tumorType,
    confidence,
    probabilities: { glioma: 0.1, meningioma: 0.1, notumor: 0.1, pituitary: 0.1, [tumorType]: confidence },
    tumorLocation: 'upper left',
    operatingPoint: 'argmax',
    calibration: 'model' as const,
    model: { id: 'brain-mri', version },
  },
  hotRegion: { x: 1, y: 1, width: 10, height: 10 },
});

const chestOutput = {
  refused: false as const,
  model: { id: 'chest-xray', version: '1.0.0' },
  result: {
    scanType: 'chest-xray' as const,
    hasPneumonia: true,
    pneumoniaType: 'bacterial' as const,
    confidence: 0.9,
    probabilities: { normal: 0.1, bacterial: 0.8, viral: 0.1 },
    decisionThreshold: 0.5,
    operatingPoint: 'balanced',
    calibration: 'model' as const,
    model: { id: 'chest-xray', version: '1.0.0' },
  },
  hotRegion: { x: 1, y: 1, width: 10, height: 10 },
};

for (const kind of await databaseKinds()) {
  describe(`a doctor's work is never lost (${kind})`, () => {
    let t: TestApp;
    let doctor: TestUser;
    let colleague: TestUser;
    let admin: TestUser;
    before(async () => {
      t = await createTestApp(kind);
      [doctor, colleague, admin] = await Promise.all([t.user(), t.user(), t.user({ role: 'admin' })]);
    });
    after(() => t.close());

    const get = (user: TestUser | null, url: string) => t.app.inject({ method: 'GET', url, headers: user?.auth ?? {} });
    const send = (user: TestUser, method: 'POST' | 'PATCH', url: string, payload?: object) =>
      t.app.inject({ method, url, headers: user.auth, ...(payload ? { payload } : {}) });
    async function upload(data: Buffer, scanType: string) {
      const res = await t.app.inject(
        uploadRequest(doctor, { data, fields: { patientId: uniqueId(), patientName: 'Priya Mehta', scanType } }),
      );
      assert.equal(res.statusCode, 201, res.body);
      return res.json<{ _id: string; patientId: string }>();
    }
    async function analysed(data: Buffer, scanType: 'brain-mri' | 'chest-xray') {
      const scan = await upload(data, scanType);
      const heatmap = heatmapMap();
      const output = scanType === 'brain-mri' ? brainOutput('glioma', 0.91, '1.0.0') : chestOutput;
      await runAnalysis(t, scan._id, { ...output, heatmapMap: heatmap });
      return { ...scan, heatmap };
    }

    test('a re-analysis shows beside the standing review, flagged newer, until a physician reviews again', async () => {
      const scan = await analysed(JPEG, 'brain-mri');
      const annotated = await send(doctor, 'POST', `/api/scans/${scan._id}/annotations`, { x: 3, y: 4, text: 'Tumour boundary' });
      assert.equal(annotated.statusCode, 201, annotated.body);
      const reviewed = await send(doctor, 'PATCH', `/api/scans/${scan._id}`, {
        status: 'completed',
        result: { hasTumor: true, confidence: 0.92, tumorType: 'meningioma', additionalNotes: 'Further investigation required.' },
      });
      assert.equal(reviewed.statusCode, 200, reviewed.body);
      const firstAnalysisId: string = reviewed.json().analysisHistory[0]._id;

      const again = await send(doctor, 'POST', '/api/ml/brain/analyze', { scanId: scan._id });
      assert.equal(again.statusCode, 200, again.body);
      await runAnalysis(t, scan._id, { ...brainOutput('pituitary', 0.88, '2.0.0'), heatmapMap: scan.heatmap });

      const detail = (await get(doctor, `/api/scans/${scan._id}`)).json();
      // The physician's finding still stands as the result...
      assert.equal(detail.result.tumorType, 'meningioma');
      assert.equal(detail.result.confidence, 0.92);
      assert.equal(detail.result.additionalNotes, 'Further investigation required.');
      // ...and the new model output shows beside it, flagged as newer than the review.
      assert.equal(detail.modelResult.tumorType, 'pituitary');
      assert.deepEqual(detail.modelResult.model, { id: 'brain-mri', version: '2.0.0' });
      assert.equal(detail.review.newerAnalysis, true);
      assert.equal(detail.review.analysisId, firstAnalysisId);
      assert.deepEqual(detail.review.reviewedBy, { _id: doctor.id, name: doctor.name });
      assert.equal(detail.review.result.tumorType, 'meningioma');
      assert.deepEqual(
        detail.analysisHistory.map((a: { result: { tumorType: string } }) => a.result.tumorType),
        ['glioma', 'pituitary'],
      );
      assert.deepEqual(
        detail.annotations.map((a: { text: string }) => a.text),
        ['Tumour boundary'],
      );
      const listed = (await get(doctor, `/api/scans?patientId=${scan.patientId}`)).json().scans[0];
      assert.equal(listed.result.tumorType, 'meningioma');
      assert.equal(listed.review.newerAnalysis, true);

      // The report says the same: the reviewed finding, and that a newer analysis disagrees.
      const report = await send(doctor, 'POST', `/api/scans/${scan._id}/report`);
      const pdf = await get(doctor, localPath(new URL(report.json().reportUrl, 'http://imagemedix.test').href));
      const text = (await pdfText(pdf.rawPayload)).replace(/\s+/g, ' ');
      assert.match(text, /Tumour detected: meningioma/i);
      assert.match(text, /newer analysis/i);
      assert.match(text, /pituitary/i);

      // A physician reviews again: it builds on the standing review and judges the new analysis.
      const second = await send(admin, 'PATCH', `/api/scans/${scan._id}`, { result: { additionalNotes: 'Re-read after re-analysis.' } });
      assert.equal(second.statusCode, 200, second.body);
      const now = second.json();
      assert.equal(now.result.tumorType, 'meningioma');
      assert.equal(now.result.additionalNotes, 'Re-read after re-analysis.');
      assert.equal(now.review.newerAnalysis, false);
      assert.equal(now.review.analysisId, now.analysisHistory[1]._id);
      // Every review is kept: who, when, what, and which analysis it judged.
      assert.deepEqual(
        now.reviews.map((r: { reviewedBy: { _id: string }; analysisId: string; result: { additionalNotes: string } }) => [
          r.reviewedBy._id,
          r.analysisId,
          r.result.additionalNotes,
        ]),
        [
          [doctor.id, firstAnalysisId, 'Further investigation required.'],
          [admin.id, now.analysisHistory[1]._id, 'Re-read after re-analysis.'],
        ],
      );
      assert.ok(now.reviews.every((r: { reviewedAt: string }) => !Number.isNaN(Date.parse(r.reviewedAt))));
    });

    test("a typed scan keeps its type: the other model's route answers 409 and changes nothing", async () => {
      const scan = await analysed(CHEST_PNG, 'chest-xray');
      const before = (await get(doctor, `/api/scans/${scan._id}`)).json();
      const res = await send(doctor, 'POST', '/api/ml/brain/analyze', { scanId: scan._id });
      assert.equal(res.statusCode, 409, res.body);
      assert.match(res.json().error, /chest-xray scan and cannot be analysed as brain-mri; use POST \/api\/ml\/chest\/analyze/);
      const after = (await get(doctor, `/api/scans/${scan._id}`)).json();
      assert.equal(after.scanType, 'chest-xray');
      assert.equal(after.status, 'completed');
      assert.equal(after.result.pneumoniaType, 'bacterial');
      assert.equal(after.analysisHistory.length, 1);
      assert.equal(after.updatedAt, before.updatedAt);
    });

    describe('PATCH /api/scans/:id', () => {
      test("each finding field is checked against the scan type's labels, naming the allowed values", async () => {
        const brain = await analysed(JPEG, 'brain-mri');
        const chest = await upload(CHEST_PNG, 'chest-xray');
        const cases: Array<[string, object, RegExp]> = [
          [brain._id, { result: { tumorType: 'astrocytoma', confidence: 0.5 } }, /^result\.tumorType must be one of "glioma", "meningioma", "pituitary" or null for a brain-mri scan; got "astrocytoma"$/],
          [brain._id, { result: { tumorType: 'notumor', confidence: 0.5 } }, /must be one of "glioma", "meningioma", "pituitary"/],
          [chest._id, { result: { pneumoniaType: 'fungal' } }, /^result\.pneumoniaType must be one of "bacterial", "viral" or null for a chest-xray scan; got "fungal"$/],
          [brain._id, { status: 'processing' }, /^body field "status" must be one of "pending", "completed", "failed"; got "processing"$/],
          [brain._id, { result: { hasTumor: 'yes' } }, /^body field "result.hasTumor" must be boolean; got "yes"$/],
        ];
        for (const [id, payload, message] of cases) {
          const res = await send(doctor, 'PATCH', `/api/scans/${id}`, payload);
          assert.equal(res.statusCode, 400, JSON.stringify(payload));
          assert.match(res.json().error, message);
        }
        assert.equal((await get(doctor, `/api/scans/${brain._id}`)).json().reviews.length, 0, 'a refused review stores nothing');
      });

      test('a partial result is merged: left out keeps, null clears, a changed finding needs its confidence', async () => {
        const scan = await analysed(JPEG, 'brain-mri');
        const notes = await send(doctor, 'PATCH', `/api/scans/${scan._id}`, { result: { additionalNotes: 'Seen.' } });
        assert.equal(notes.statusCode, 200, notes.body);
        assert.equal(notes.json().result.tumorType, 'glioma');
        assert.equal(notes.json().result.confidence, 0.91, 'a partial result keeps the confidence');
        assert.equal(notes.json().result.tumorLocation, 'upper left');

        const noConfidence = await send(doctor, 'PATCH', `/api/scans/${scan._id}`, { result: { tumorType: 'meningioma' } });
        assert.equal(noConfidence.statusCode, 400);
        assert.match(noConfidence.json().error, /result\.confidence is required when the finding changes: the current confidence \(0\.91\) was for "glioma"/);

        const changed = await send(doctor, 'PATCH', `/api/scans/${scan._id}`, { result: { tumorType: 'meningioma', confidence: null } });
        assert.equal(changed.statusCode, 200, changed.body);
        assert.deepEqual(
          [changed.json().result.hasTumor, changed.json().result.tumorType, changed.json().result.confidence, changed.json().result.additionalNotes],
          [true, 'meningioma', null, 'Seen.'],
        );
        const cleared = await send(doctor, 'PATCH', `/api/scans/${scan._id}`, { result: { hasTumor: false } });
        assert.equal(cleared.statusCode, 200, cleared.body);
        assert.deepEqual(
          [cleared.json().result.hasTumor, cleared.json().result.tumorType, cleared.json().result.tumorLocation],
          [false, null, null],
        );
        assert.equal(cleared.json().modelResult.tumorType, 'glioma', 'the model output is never overwritten');
      });

      test('updatedAt moves on every review and annotation', async () => {
        const scan = await analysed(JPEG, 'brain-mri');
        let last = (await get(doctor, `/api/scans/${scan._id}`)).json().updatedAt as string;
        const later = async () => {
          const now = (await get(doctor, `/api/scans/${scan._id}`)).json().updatedAt as string;
          assert.ok(Date.parse(now) > Date.parse(last), `${now} after ${last}`);
          last = now;
        };
        await new Promise((r) => setTimeout(r, 5));
        const reviewed = await send(doctor, 'PATCH', `/api/scans/${scan._id}`, { result: { additionalNotes: 'x' } });
        assert.equal(reviewed.statusCode, 200);
        assert.ok(Date.parse(reviewed.json().updatedAt) > Date.parse(last));
        await later();
        await new Promise((r) => setTimeout(r, 5));
        await send(doctor, 'POST', `/api/scans/${scan._id}/annotations`, { x: 1, y: 1, text: 'Note' });
        await later();
      });
    });

    describe('two physicians reviewing one finding at once', () => {
      const review = (user: TestUser, id: string, ifMatch: string | undefined, result: object) =>
        t.app.inject({
          method: 'PATCH',
          url: `/api/scans/${id}`,
          headers: { ...user.auth, ...(ifMatch === undefined ? {} : { 'if-match': ifMatch }) },
          payload: { status: 'completed', result },
        });
      /** An analysed brain scan that both the doctor and the colleague may review, as each loaded it. */
      async function loadedByBoth() {
        const scan = await analysed(JPEG, 'brain-mri');
        const assigned = await t.app.inject({
          method: 'POST',
          url: `/api/patients/${scan.patientId}/assign-doctor`,
          headers: admin.auth,
          payload: { doctorId: colleague.id },
        });
        assert.equal(assigned.statusCode, 200, assigned.body);
        const [mine, theirs] = await Promise.all([get(doctor, `/api/scans/${scan._id}`), get(colleague, `/api/scans/${scan._id}`)]);
        const etag = String(mine.headers.etag);
        assert.equal(etag, `"${mine.json().findingVersion}"`, 'the ETag is the findingVersion the body carries');
        assert.equal(theirs.headers.etag, etag);
        return { scan, etag };
      }

      test('the later save with the ETag it loaded is refused (412) naming who reviewed and when; the first review stands', async () => {
        const { scan, etag } = await loadedByBoth();
        const first = await review(doctor, scan._id, etag, { tumorType: 'meningioma', confidence: null, additionalNotes: 'First reader: meningioma.' });
        assert.equal(first.statusCode, 200, first.body);
        assert.notEqual(first.headers.etag, etag, 'a review is a new version of the finding');
        const reviewedAt: string = first.json().review.reviewedAt;

        const second = await review(colleague, scan._id, etag, { hasTumor: false, confidence: null, additionalNotes: 'Second reader: no tumour.' });
        assert.equal(second.statusCode, 412, second.body);
        const { error } = second.json();
        assert.ok(error.includes(`${doctor.name} reviewed this finding at ${reviewedAt}, after you loaded it`), error);
        assert.match(error, /not saved: reload the scan .* then reapply your changes/);

        const now = (await get(doctor, `/api/scans/${scan._id}`)).json();
        assert.equal(now.result.tumorType, 'meningioma');
        assert.equal(now.result.additionalNotes, 'First reader: meningioma.');
        assert.equal(now.reviews.length, 1, 'the refused review wrote nothing');
        assert.deepEqual(now.review.reviewedBy, { _id: doctor.id, name: doctor.name });

        // Reloaded (the new ETag) and reapplied: saved over the review its author now saw.
        const reapplied = await review(colleague, scan._id, String(first.headers.etag), {
          hasTumor: false,
          confidence: null,
          additionalNotes: 'Second reader: no tumour.',
        });
        assert.equal(reapplied.statusCode, 200, reapplied.body);
        assert.equal(reapplied.json().reviews.length, 2);
      });

      test('sent at the same moment with the same ETag, one review is saved and the other refused', async () => {
        const { scan, etag } = await loadedByBoth();
        const answers = await Promise.all([
          review(doctor, scan._id, etag, { additionalNotes: 'Reader one.' }),
          review(colleague, scan._id, etag, { additionalNotes: 'Reader two.' }),
        ]);
        assert.deepEqual(answers.map((a) => a.statusCode).sort(), [200, 412], answers.map((a) => a.body).join('\n'));
        const now = (await get(doctor, `/api/scans/${scan._id}`)).json();
        assert.equal(now.reviews.length, 1);
        assert.equal(now.result.additionalNotes, answers[0].statusCode === 200 ? 'Reader one.' : 'Reader two.');
      });

      test('a newer analysis since the finding was loaded refuses the review; without If-Match, as the API document reviews, it is saved', async () => {
        const { scan, etag } = await loadedByBoth();
        assert.equal((await send(doctor, 'POST', '/api/ml/brain/analyze', { scanId: scan._id })).statusCode, 200);
        await runAnalysis(t, scan._id, { ...brainOutput('pituitary', 0.88, '2.0.0'), heatmapMap: scan.heatmap });
        const stale = await review(doctor, scan._id, etag, { tumorType: 'glioma', confidence: null });
        assert.equal(stale.statusCode, 412, stale.body);
        assert.match(stale.json().error, /A newer analysis of this scan finished at \d{4}-\d\d-\d\dT[\d:.]+Z, after you loaded it/);
        assert.equal((await get(doctor, `/api/scans/${scan._id}`)).json().reviews.length, 0);

        const plain = await review(colleague, scan._id, undefined, { additionalNotes: 'Reviewed without If-Match.' });
        assert.equal(plain.statusCode, 200, plain.body);
        assert.equal(plain.json().result.additionalNotes, 'Reviewed without If-Match.');
        assert.equal(plain.json().result.tumorType, 'pituitary');
      });
    });

    test('jobStatus: {state, progress} for every queued or analysed scan, in the states waiting, active, completed, failed', async () => {
      const status = async (id: string) => {
        const res = await get(doctor, `/api/scans/${id}/status`);
        assert.equal(res.statusCode, 200, res.body);
        return res.json().jobStatus as { state: string; progress: number };
      };
      const scan = await upload(JPEG, 'brain-mri');
      assert.deepEqual(await status(scan._id), { state: 'waiting', progress: 0, stage: null });

      const analysis = (await latestAnalysisOf(t.ctx.db, scan._id))!;
      await claimAnalysis(t.ctx.db, analysis.id, 1, 10);
      // A worker's claim alone shows the first stage: no separate write for it.
      assert.deepEqual(await status(scan._id), { state: 'active', progress: 10, stage: 'decode' });
      await reportProgress(t.ctx.db, analysis.id, 1, 'inference', 45);
      assert.deepEqual(await status(scan._id), { state: 'active', progress: 45, stage: 'inference' });
      const ml = (await get(doctor, `/api/ml/status/${scan._id}`)).json();
      assert.equal(ml.state, 'active');
      assert.equal(ml.progress, 45);

      const done = await analysed(JPEG, 'brain-mri');
      assert.equal((await status(done._id)).state, 'completed');
      assert.equal((await status(done._id)).progress, 100);

      const refused = await upload(CHEST_PNG, 'chest-xray');
      await runAnalysis(t, refused._id, { refused: true, reason: 'Not a chest X-ray.', model: null });
      assert.equal((await status(refused._id)).state, 'failed');
    });
  });
}
