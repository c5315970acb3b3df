/**
 * Which patient an upload belongs to: the form's patientId may be the hospital identifier or
 * the patient's `_id`; a new patient needs a name; a name that contradicts the record is refused,
 * and so is a DICOM file whose header names another patient, by identifier or by name, unless the
 * uploader confirms it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { uniqueId, useTestApp, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { captureLog, leakedMarkers } from '../../test/helpers/log-capture.js';
import { syntheticImage } from '../imaging/testing/dicom-writer.js';
import { FIXTURES, uploadRequest } from './test-support.js';

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));
/** PatientID 4MR1 in its header (pydicom's MR_small). */
const DICOM_4MR1 = readFileSync(path.join(FIXTURES, 'imaging/MR_small_implicit.dcm'));
/** A 32 x 32 brain MR instance whose header names `patientId` and `patientName` (DICOM PN). */
function brainMr(patientId: string, patientName?: string): Buffer {
  return syntheticImage({
    rows: 32,
    columns: 32,
    values: Array.from({ length: 32 * 32 }, (_, i) => (i * 37) & 0xfff),
    bitsStored: 12,
    extra: [
      { tag: 0x00080060, vr: 'CS', value: 'MR' },
      ...(patientName === undefined ? [] : [{ tag: 0x00100010, vr: 'PN' as const, value: patientName }]),
      { tag: 0x00100020, vr: 'LO', value: patientId },
      { tag: 0x00180015, vr: 'CS', value: 'BRAIN' },
    ],
  });
}
/** No PatientID in its header. */
const DICOM_NO_PATIENT_ID = readFileSync(path.join(FIXTURES, 'imaging/emri_small_RLE.dcm'));

for (const kind of await databaseKinds()) {
  describe(`upload: linking the patient (${kind})`, () => {
    let t: TestApp;
    let doctor: TestUser;
    const captured = captureLog('trace');
    useTestApp(kind, {
      log: captured.log,
      async setup(app) {
        t = app;
        doctor = await t.user();
      },
    });

    const upload = (fields: Record<string, string>, user: TestUser = doctor) => t.app.inject(uploadRequest(user, { data: JPEG, fields }));
    const patientCount = async () => (await t.app.inject({ url: '/api/patients?limit=100', headers: doctor.auth })).json().totalPatients as number;

    test("the patient's _id links the scan to that patient; no second patient is made", async () => {
      const patient = await t.patient(doctor, { name: 'Priya Mehta' });
      const count = await patientCount();
      const res = await upload({ patientId: patient._id });
      assert.equal(res.statusCode, 201, res.body);
      assert.equal(res.json().patientId, patient.patientId);
      assert.equal(res.json().patientName, 'Priya Mehta');
      assert.equal(await patientCount(), count);
      const scans = (await t.app.inject({ url: `/api/patients/${patient._id}`, headers: doctor.auth })).json().scans;
      assert.deepEqual(
        scans.map((s: { _id: string }) => s._id),
        [res.json()._id],
      );
    });

    test('the same name in other case or spacing is the same patient; a different name is 409 and stores nothing', async () => {
      const patient = await t.patient(doctor, { name: 'Priya Mehta' });
      assert.equal((await upload({ patientId: patient.patientId, patientName: '  priya   MEHTA ' })).statusCode, 201);
      const res = await upload({ patientId: patient.patientId, patientName: 'Raj Sharma' });
      assert.equal(res.statusCode, 409, res.body);
      assert.match(res.json().error, /patientName does not match the name on record for patient/);
      const detail = (await t.app.inject({ url: `/api/patients/${patient._id}`, headers: doctor.auth })).json();
      assert.equal(detail.name, 'Priya Mehta');
      assert.equal(detail.scans.length, 1);
    });

    test('an unknown hospital patientId creates the patient from patientName, and without one is 400', async () => {
      const patientId = uniqueId();
      const missing = await upload({ patientId });
      assert.equal(missing.statusCode, 400);
      assert.match(missing.json().error, /"patientName" is required: no patient with patientId .+ exists yet/);
      const created = await upload({ patientId, patientName: 'Иван Петров' });
      assert.equal(created.statusCode, 201, created.body);
      const detail = (await t.app.inject({ url: `/api/patients/${patientId}`, headers: doctor.auth })).json();
      assert.equal(detail.name, 'Иван Петров');
      assert.deepEqual(
        detail.assignedDoctors.map((d: { _id: string }) => d._id),
        [doctor.id],
      );
    });

    // Found by an exploratory client: a form sent with patientId "undefined" created patient
    // "undefined", and every later upload with the same bug would have joined that record.
    test('a placeholder patientId or patientName ("undefined", "null", "None") is 400 and creates no patient', async () => {
      const count = await patientCount();
      for (const fields of [
        { patientId: 'undefined', patientName: 'Priya Mehta' },
        { patientId: 'NULL', patientName: 'Priya Mehta' },
        { patientId: 'None', patientName: 'Priya Mehta' },
        { patientId: uniqueId(), patientName: 'undefined' },
      ]) {
        const res = await upload(fields);
        assert.equal(res.statusCode, 400, `${JSON.stringify(fields)}: ${res.body}`);
        assert.match(res.json().error, /is what a program sends when the value is missing.*send the one on the patient's record/);
      }
      assert.equal(await patientCount(), count);
      // A real surname that reads like one is still a name.
      assert.equal((await upload({ patientId: uniqueId(), patientName: 'Ada Null' })).statusCode, 201);
    });

    test("a DICOM file whose header PatientID is another patient's is 409 naming both, stores nothing, and is filed only once confirmed", async () => {
      const dicom = (fields: Record<string, string>, data = DICOM_4MR1) =>
        t.app.inject(uploadRequest(doctor, { data, filename: 'slice.dcm', contentType: 'application/dicom', fields }));
      const scansOf = async (id: string) => (await t.app.inject({ url: `/api/patients/${id}`, headers: doctor.auth })).json().scans.length as number;
      const patient = await t.patient(doctor, { name: 'Priya Mehta' });
      const count = await patientCount();

      const refused = await dicom({ patientId: patient.patientId });
      assert.equal(refused.statusCode, 409, refused.body);
      const { error, dicomPatientId } = refused.json();
      // The header's identifier as data too: what a client sends back to confirm, unparsed.
      assert.equal(dicomPatientId, '4MR1');
      assert.ok(error.includes(`The DICOM header's PatientID "4MR1" is not the form's patientId "${patient.patientId}"`), error);
      assert.ok(error.includes(`"confirmDicomPatientId" set to "4MR1" to file it under ${patient.patientId}`), error);
      // By the patient's _id, the refusal names the hospital identifier that _id stands for.
      const byRowId = await dicom({ patientId: patient._id });
      assert.equal(byRowId.statusCode, 409, byRowId.body);
      assert.ok(byRowId.json().error.includes(`patientId "${patient.patientId}"`), byRowId.body);
      // A new patient is not created from a file that names another.
      const newPatient = uniqueId();
      assert.equal((await dicom({ patientId: newPatient, patientName: 'Raj Sharma' })).statusCode, 409);
      // A confirmation of another identifier confirms nothing.
      assert.equal((await dicom({ patientId: patient.patientId, confirmDicomPatientId: '9RG1' })).statusCode, 409);
      assert.equal(await scansOf(patient._id), 0);
      assert.equal(await patientCount(), count);

      // Its header names someone else too (CompressedSamples^MR1): that is confirmed alike.
      const confirmed = await dicom({ patientId: patient.patientId, confirmDicomPatientId: '4MR1', confirmDicomPatientName: 'MR1 CompressedSamples' });
      assert.equal(confirmed.statusCode, 201, confirmed.body);
      assert.equal(confirmed.json().patientId, patient.patientId);
      assert.equal(await scansOf(patient._id), 1);

      // A header naming the form's patient (case aside), or naming none, needs no confirmation.
      const same = await dicom({ patientId: '4mr1', patientName: 'MR1 CompressedSamples' });
      assert.equal(same.statusCode, 201, same.body);
      const unnamed = await dicom({ patientId: patient.patientId }, DICOM_NO_PATIENT_ID);
      assert.equal(unnamed.statusCode, 201, unnamed.body);

      // The uploader was told both identifiers; the log, which holds these requests, names neither.
      assert.match(captured.text(), /scan uploaded/);
      assert.deepEqual(leakedMarkers(captured.text(), [patient.patientId, '4MR1', newPatient]), []);
    });

    test("a DICOM file whose header PatientName is another person's is 409 with that name, stores nothing, and is filed only once confirmed", async () => {
      const asForm = (data: Buffer, fields: Record<string, string>) =>
        t.app.inject(uploadRequest(doctor, { data, filename: 'slice.dcm', contentType: 'application/dicom', fields }));
      const asBody = (data: Buffer) =>
        t.app.inject({ method: 'POST', url: '/api/scans', headers: { 'content-type': 'application/dicom', ...doctor.auth }, payload: data });
      const scansOf = async (id: string) => (await t.app.inject({ url: `/api/patients/${id}`, headers: doctor.auth })).json().scans.length as number;
      const patient = await t.patient(doctor, { name: 'Priya Mehta' });
      const other = brainMr(patient.patientId, 'SHARMA^RAJ');

      // By the form's patientId (the record's name), by the form's name, and as the whole body
      // (the patient found by the header's PatientID, in the upload's own statement).
      for (const refused of [await asForm(other, { patientId: patient.patientId }), await asForm(other, { patientId: patient._id, patientName: 'priya mehta' }), await asBody(other)]) {
        assert.equal(refused.statusCode, 409, refused.body);
        const { error, dicomPatientName } = refused.json();
        assert.equal(dicomPatientName, 'RAJ SHARMA');
        assert.ok(error.includes(`The DICOM header's PatientName "RAJ SHARMA" shares no name with patient ${patient.patientId}'s name`), error);
        assert.ok(error.includes('"confirmDicomPatientName" set to "RAJ SHARMA"'), error);
        // The record's name is not in the answer: the uploader sent the header's, not the record's.
        assert.ok(!error.includes('Priya'), error);
      }
      // A new patient is not created under a form name the file contradicts.
      const newPatient = uniqueId();
      assert.equal((await asForm(brainMr(newPatient, 'SHARMA^RAJ'), { patientId: newPatient, patientName: 'Priya Mehta' })).statusCode, 409);
      assert.equal((await t.app.inject({ url: `/api/patients/${newPatient}`, headers: doctor.auth })).statusCode, 404);
      // A confirmation of another name confirms nothing.
      assert.equal((await asForm(other, { patientId: patient.patientId, confirmDicomPatientName: 'KAPOOR^ANIL' })).statusCode, 409);
      assert.equal(await scansOf(patient._id), 0);

      // Confirmed by the answer's spelling or the header's own.
      for (const confirmDicomPatientName of ['RAJ SHARMA', 'Sharma^Raj']) {
        const confirmed = await asForm(other, { patientId: patient.patientId, confirmDicomPatientName });
        assert.equal(confirmed.statusCode, 201, confirmed.body);
        assert.equal(confirmed.json().patientName, 'Priya Mehta');
      }
      // Spellings of her name (order, case, accents, initials) and headers naming nobody pass unasked,
      // as a form and as the body; a header with an accent the database keeps passes too (the
      // statement's quick filter misses it, the transaction compares as a person would).
      const accented = await t.patient(doctor, { name: 'José García' });
      const passing: Array<[Buffer, string]> = [
        [brainMr(patient.patientId, 'MEHTA^PRIYA^K'), patient.patientId],
        [brainMr(patient.patientId, 'mehta^p'), patient.patientId],
        [brainMr(patient.patientId, 'ANONYMOUS'), patient.patientId],
        [brainMr(patient.patientId, '^^^^'), patient.patientId],
        [brainMr(patient.patientId), patient.patientId],
        [brainMr(accented.patientId, 'GARCIA^JOSE'), accented.patientId],
      ];
      for (const [data, patientId] of passing) {
        const form = await asForm(data, { patientId });
        assert.equal(form.statusCode, 201, form.body);
        const body = await asBody(data);
        assert.equal(body.statusCode, 201, body.body);
      }
      assert.equal(await scansOf(patient._id), 2 + 2 * 5);
      assert.equal(await scansOf(accented._id), 2);

      // Bodies sent at once are written together (one statement for the group): each is judged alone.
      const together = await Promise.all([asBody(other), asBody(brainMr(patient.patientId, 'PRIYA MEHTA')), asBody(other), asBody(brainMr(patient.patientId, 'Mehta^Priya'))]);
      assert.deepEqual(
        together.map((r) => r.statusCode),
        [409, 201, 409, 201],
      );
      assert.equal(await scansOf(patient._id), 2 + 2 * 5 + 2);

      // The uploader was told the header's name; the log, which holds these requests, has no name.
      assert.deepEqual(leakedMarkers(captured.text(), ['SHARMA', 'Sharma', 'Mehta', 'MEHTA', 'García']), []);
    });

    test("an unknown _id, or another doctor's patient by _id, is 404 and creates nothing", async () => {
      const count = await patientCount();
      const res = await upload({ patientId: '6f1c1a52-2b0e-4f5e-9a55-1d2b3c4d5e6f', patientName: 'Priya Mehta' });
      assert.equal(res.statusCode, 404, res.body);
      assert.equal(await patientCount(), count);
      const other = await t.user();
      const theirs = await t.patient(other);
      assert.equal((await upload({ patientId: theirs._id })).statusCode, 404);
      // A hospital id in use answers one 409 to everyone, naming no one (SECURITY.md).
      const inUse = await upload({ patientId: theirs.patientId });
      assert.equal(inUse.statusCode, 409, inUse.body);
      assert.ok(!inUse.body.includes(theirs.name), inUse.body);
      assert.equal(await patientCount(), count);
    });
  });
}
