/** DELETE /api/patients/:id/assign-doctor/:doctorId: admins un-assign, never the last doctor. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createTestApp, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';

for (const kind of await databaseKinds()) {
  describe(`un-assigning a doctor (${kind})`, () => {
    let t: TestApp;
    let admin: TestUser;
    let first: TestUser;
    let second: TestUser;
    before(async () => {
      t = await createTestApp(kind);
      [admin, first, second] = await Promise.all([t.user({ role: 'admin' }), t.user(), t.user()]);
    });
    after(() => t.close());

    const unassign = (user: TestUser | null, patient: string, doctor: string) =>
      t.app.inject({ method: 'DELETE', url: `/api/patients/${patient}/assign-doctor/${doctor}`, headers: user?.auth ?? {} });
    const assign = (patient: string, doctorId: string) =>
      t.app.inject({ method: 'POST', url: `/api/patients/${patient}/assign-doctor`, headers: admin.auth, payload: { doctorId } });

    test('an admin removes one doctor; the answer lists the remaining ones, and that doctor loses access', async () => {
      const patient = await t.patient(first);
      assert.equal((await assign(patient._id, second.id)).statusCode, 200);
      const res = await unassign(admin, patient._id, first.id);
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(res.json(), { _id: patient._id, assignedDoctors: [second.id] });
      const seen = await t.app.inject({ url: `/api/patients/${patient._id}`, headers: first.auth });
      assert.equal(seen.statusCode, 404);
      // The hospital patientId works as well as the _id.
      assert.equal((await assign(patient.patientId, first.id)).statusCode, 200);
      assert.equal((await unassign(admin, patient.patientId, second.id)).statusCode, 200);
    });

    test("the patient's last doctor cannot be removed (409), even by two admins at once", async () => {
      const patient = await t.patient(first);
      const last = await unassign(admin, patient._id, first.id);
      assert.equal(last.statusCode, 409, last.body);
      assert.match(last.json().error, /only assigned doctor: assign another doctor/);

      await assign(patient._id, second.id);
      const both = await Promise.all([unassign(admin, patient._id, first.id), unassign(admin, patient._id, second.id)]);
      assert.deepEqual(both.map((r) => r.statusCode).sort(), [200, 409]);
      const detail = (await t.app.inject({ url: `/api/patients/${patient._id}`, headers: admin.auth })).json();
      assert.equal(detail.assignedDoctors.length, 1);
    });

    test('errors: not assigned or unknown is 404, a doctor is 403, no token is 401', async () => {
      const patient = await t.patient(first);
      await assign(patient._id, second.id);
      const outsider = await t.user();
      assert.equal((await unassign(admin, patient._id, outsider.id)).statusCode, 404);
      assert.equal((await unassign(admin, patient._id, 'not-a-uuid')).statusCode, 404);
      assert.equal((await unassign(admin, '00000000-0000-4000-8000-000000000000', first.id)).statusCode, 404);
      const byDoctor = await unassign(first, patient._id, second.id);
      assert.equal(byDoctor.statusCode, 403);
      assert.deepEqual(Object.keys(byDoctor.json()), ['error']);
      assert.equal((await unassign(null, patient._id, second.id)).statusCode, 401);
    });
  });
}
