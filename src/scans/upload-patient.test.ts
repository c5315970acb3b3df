/**
 * Which patient an upload belongs to: the form's patientId may be the hospital identifier or
 * the patient's `_id`; a new patient needs a name; a name that contradicts the record is refused.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { uniqueId, useTestApp, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { FIXTURES, uploadRequest } from './test-support.js';

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));

for (const kind of await databaseKinds()) {
  describe(`upload: linking the patient (${kind})`, () => {
    let t: TestApp;
    let doctor: TestUser;
    useTestApp(kind, {
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
