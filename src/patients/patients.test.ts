import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { uniqueId, useTestApp, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';

for (const kind of await databaseKinds()) {
  describe(`patients (${kind})`, () => {
    let t: TestApp;
    let admin: TestUser;
    let docA: TestUser;
    let docB: TestUser;
    useTestApp(kind, {
      async setup(app) {
        t = app;
        admin = await t.user({ role: 'admin', name: 'Admin' });
        docA = await t.user({ name: 'Dr. Vikram Desai' });
        docB = await t.user({ name: 'Dr. Ananya Singh' });
      },
    });

    const inject = (user: TestUser | null, method: string, url: string, payload?: unknown) =>
      t.app.inject({
        method: method as 'GET',
        url,
        payload: payload as Record<string, unknown> | undefined,
        headers: user ? user.auth : {},
      });

    test('create returns the documented record, assigned to its creator', async () => {
      const patientId = uniqueId();
      const res = await inject(docA, 'POST', '/api/patients', {
        patientId,
        name: 'Raj Sharma',
        dateOfBirth: '1992-08-22',
        gender: 'male',
        contact: { email: 'raj.sharma@example.com', phone: '555-987-6543' },
      });
      assert.equal(res.statusCode, 201);
      const p = res.json();
      assert.equal(p.patientId, patientId);
      assert.equal(p.name, 'Raj Sharma');
      assert.equal(p.dateOfBirth, '1992-08-22T00:00:00.000Z');
      assert.equal(p.gender, 'male');
      assert.deepEqual(p.contact, { email: 'raj.sharma@example.com', phone: '555-987-6543' });
      assert.equal(p.status, 'active');
      assert.deepEqual(p.assignedDoctors, [docA.id]);
      assert.deepEqual(p.medicalHistory, []);
      assert.deepEqual(p.scans, []);
      assert.deepEqual(p.notes, []);
      assert.match(p._id, /^[0-9a-f-]{36}$/);
    });

    test('a patientId in use answers one 409 to everyone, never saying whose it is (issue 12, item 2)', async () => {
      const p = await t.patient(docA, { name: 'Leakington Pharaoh' });
      const own = await t.patient(docB);
      const answers = [
        await inject(docA, 'POST', '/api/patients', { patientId: p.patientId, name: 'Someone' }), // visible to A
        await inject(docB, 'POST', '/api/patients', { patientId: p.patientId, name: 'Someone' }), // not visible to B
        await inject(docB, 'PATCH', `/api/patients/${own._id}`, { patientId: p.patientId }),
      ];
      for (const res of answers) {
        assert.equal(res.statusCode, 409);
        assert.deepEqual(res.json(), {
          error: `patientId ${p.patientId} is already in use at this site: if this is your patient, ask an administrator to assign them to you`,
        });
      }
      // Reading it: "not yours" and "not there" are the same 404.
      const notYours = await inject(docB, 'GET', `/api/patients/${p.patientId}`);
      const notThere = await inject(docB, 'GET', `/api/patients/PT-NOT-THERE-${Date.now()}`);
      assert.equal(notYours.statusCode, 404);
      assert.deepEqual(notYours.json(), notThere.json());
      assert.deepEqual(
        (await inject(docB, 'GET', `/api/patients/${p._id}`)).json(),
        (await inject(docB, 'GET', '/api/patients/00000000-0000-4000-8000-000000000000')).json(),
      );
    });

    test('create validates input and names the field', async () => {
      const cases: [Record<string, unknown>, RegExp][] = [
        [{ name: 'No Id' }, /patientId/],
        [{ patientId: uniqueId() }, /name/],
        [{ patientId: uniqueId(), name: 'X', dateOfBirth: '2020-02-30' }, /dateOfBirth/],
        [{ patientId: uniqueId(), name: 'X', dateOfBirth: '2999-01-01' }, /future/],
        [{ patientId: uniqueId(), name: 'X', lastVisit: '2999-01-01T00:00:00Z' }, /^lastVisit cannot be in the future: it is a visit that took place \(an appointment to come is nextAppointment\)$/],
        [{ patientId: uniqueId(), name: 'X', gender: 'robot' }, /gender/],
        [{ patientId: uniqueId(), name: 'X', status: 'deceased' }, /status/],
        [{ patientId: uniqueId(), name: 'X', contact: { email: 'nope' } }, /contact.email/],
        [{ patientId: 'bad id with spaces', name: 'X' }, /patientId/],
        [{ patientId: 'undefined', name: 'X' }, /patientId "undefined" is what a program sends when the value is missing/],
        [{ patientId: 'null', name: 'X' }, /patientId "null" is what a program sends/],
        [{ patientId: uniqueId(), name: '[object Object]' }, /name "\[object Object\]" is what a program sends/],
      ];
      for (const [payload, field] of cases) {
        const res = await inject(docA, 'POST', '/api/patients', payload);
        assert.equal(res.statusCode, 400, JSON.stringify(payload));
        assert.match(res.json().error, field, JSON.stringify(payload));
      }
      // Nor may an edit turn a record into the placeholder one.
      const p = await t.patient(docA, { name: 'Raj Sharma' });
      const edit = await inject(docA, 'PATCH', `/api/patients/${p._id}`, { patientId: 'undefined' });
      assert.equal(edit.statusCode, 400);
      assert.match(edit.json().error, /patientId "undefined" is what a program sends/);
      assert.equal((await inject(docA, 'GET', `/api/patients/${p._id}`)).json().patientId, p.patientId);
      const future = await inject(docA, 'PATCH', `/api/patients/${p._id}`, { lastVisit: new Date(Date.now() + 86_400_000).toISOString() });
      assert.equal(future.statusCode, 400);
      assert.match(future.json().error, /^lastVisit cannot be in the future/);
      // A visit just now from a client whose clock runs a little fast is no future one.
      const justNow = await inject(docA, 'PATCH', `/api/patients/${p._id}`, { lastVisit: new Date(Date.now() + 60_000).toISOString() });
      assert.equal(justNow.statusCode, 200, justNow.body);
      const appointment = await inject(docA, 'PATCH', `/api/patients/${p._id}`, { nextAppointment: '2030-06-10T14:00:00.000Z' });
      assert.equal(appointment.statusCode, 200, appointment.body);
    });

    test("a doctor sees only their patients; another doctor's patient is 404 everywhere", async () => {
      const mine = await t.patient(docA, { name: 'Priya Mehta' });
      const listB = await inject(docB, 'GET', '/api/patients?limit=100');
      assert.ok(!listB.json().patients.some((p: { _id: string }) => p._id === mine._id));
      for (const [method, url, payload] of [
        ['GET', `/api/patients/${mine._id}`, undefined],
        ['GET', `/api/patients/${mine.patientId}`, undefined],
        ['PATCH', `/api/patients/${mine._id}`, { status: 'inactive' }],
        ['POST', `/api/patients/${mine._id}/medical-history`, { condition: 'X' }],
        ['POST', `/api/patients/${mine._id}/notes`, { content: 'X' }],
      ] as const) {
        const res = await inject(docB, method, url, payload);
        assert.equal(res.statusCode, 404, `${method} ${url}`);
        assert.deepEqual(res.json(), { error: 'Patient not found' });
      }
      const unknown = await inject(docA, 'GET', '/api/patients/00000000-0000-4000-8000-000000000000');
      assert.deepEqual(unknown.json(), { error: 'Patient not found' });
      // The owner and admins see it.
      assert.equal((await inject(docA, 'GET', `/api/patients/${mine._id}`)).statusCode, 200);
      assert.equal((await inject(admin, 'GET', `/api/patients/${mine._id}`)).statusCode, 200);
    });

    test('every patient route needs a token', async () => {
      const p = await t.patient(docA);
      for (const [method, url] of [
        ['GET', '/api/patients'],
        ['GET', `/api/patients/${p._id}`],
        ['POST', '/api/patients'],
        ['PATCH', `/api/patients/${p._id}`],
        ['POST', `/api/patients/${p._id}/medical-history`],
        ['POST', `/api/patients/${p._id}/notes`],
        ['POST', `/api/patients/${p._id}/assign-doctor`],
        ['DELETE', `/api/patients/${p._id}`],
      ] as const) {
        const res = await inject(null, method, url, {});
        assert.equal(res.statusCode, 401, `${method} ${url}`);
        assert.ok(res.json().error);
      }
    });

    test('list paginates, filters by status and searches by name or id', async () => {
      const doc = await t.user();
      const tag = uniqueId('Q');
      for (let i = 0; i < 12; i++) {
        await t.patient(doc, { name: `Search ${tag} ${i}`, status: i % 3 === 0 ? 'archived' : 'active' });
      }
      const other = await t.patient(doc, { name: 'Zed Unrelated' });
      const page1 = (await inject(doc, 'GET', '/api/patients?limit=5&page=1')).json();
      assert.equal(page1.totalPatients, 13);
      assert.equal(page1.totalPages, 3);
      assert.equal(page1.currentPage, 1);
      assert.equal(page1.patients.length, 5);
      const page3 = (await inject(doc, 'GET', '/api/patients?limit=5&page=3')).json();
      assert.equal(page3.patients.length, 3);
      const archived = (await inject(doc, 'GET', '/api/patients?status=archived&limit=50')).json();
      assert.equal(archived.totalPatients, 4);
      assert.ok(archived.patients.every((p: { status: string }) => p.status === 'archived'));
      const search = (await inject(doc, 'GET', `/api/patients?search=${tag.toLowerCase()}&limit=50`)).json();
      assert.equal(search.totalPatients, 12);
      const byId = (await inject(doc, 'GET', `/api/patients?search=${other.patientId}`)).json();
      assert.deepEqual(
        byId.patients.map((p: { _id: string }) => p._id),
        [other._id],
      );
      assert.deepEqual(byId.patients[0].assignedDoctors, [{ _id: doc.id, name: doc.name }]);
      const wildcard = (await inject(doc, 'GET', '/api/patients?search=%25')).json();
      assert.equal(wildcard.totalPatients, 0, 'a % in search is a literal, not a wildcard');
      const bad = await inject(doc, 'GET', '/api/patients?limit=1000');
      assert.equal(bad.statusCode, 400);
      assert.match(bad.json().error, /limit/);
      const badStatus = await inject(doc, 'GET', '/api/patients?status=gone');
      assert.equal(badStatus.statusCode, 400);
    });

    test('search finds a name whatever its accents and case: "jose" finds José, "nunez" Ñúñez, "nguyen" Nguyễn', async () => {
      const doc = await t.user();
      const tag = uniqueId('A').toLowerCase();
      const jose = await t.patient(doc, { name: `José Ñúñez ${tag}` });
      const nguyen = await t.patient(doc, { name: `Nguyễn Văn An ${tag}` });
      const zoe = await t.patient(doc, { name: `Zoe Åberg ${tag}` });
      const found = async (term: string) =>
        (await inject(doc, 'GET', `/api/patients?search=${encodeURIComponent(term)}&limit=50`)).json().patients.map((p: { _id: string }) => p._id).sort();
      for (const term of ['jose ñ', 'JOSE', 'nunez', 'Ñúñez', 'josé ñúñez']) assert.deepEqual(await found(term), [jose._id], term);
      for (const term of ['nguyen van', 'Nguyễn', 'NGUYEN VĂN']) assert.deepEqual(await found(term), [nguyen._id], term);
      // A term with an accent finds the name stored without it too, and the tag finds all three.
      assert.deepEqual(await found('zoë aberg'), [zoe._id]);
      assert.deepEqual(await found(tag), [jose._id, nguyen._id, zoe._id].sort());
      assert.deepEqual(await found('josx'), []);
    });

    test('PATCH merges contact instead of replacing it; null removes a field', async () => {
      const p = await t.patient(docA, {
        name: 'Priya Mehta',
        contact: { email: 'priya.mehta@example.com', phone: '555-123-4567', address: '123 Main St, Mumbai' },
      });
      const res = await inject(docA, 'PATCH', `/api/patients/${p._id}`, {
        contact: { phone: '555-111-2222', address: '456 Oak Ave, Delhi' },
        status: 'active',
      });
      assert.equal(res.statusCode, 200);
      const body = res.json();
      assert.equal(body._id, p._id);
      assert.equal(body.patientId, p.patientId);
      assert.equal(body.name, 'Priya Mehta');
      assert.deepEqual(body.contact, {
        email: 'priya.mehta@example.com',
        phone: '555-111-2222',
        address: '456 Oak Ave, Delhi',
      });
      const removed = await inject(docA, 'PATCH', `/api/patients/${p._id}`, { contact: { address: null } });
      assert.deepEqual(removed.json().contact, { email: 'priya.mehta@example.com', phone: '555-111-2222' });
      const empty = await inject(docA, 'PATCH', `/api/patients/${p._id}`, {});
      assert.equal(empty.statusCode, 400);
      const taken = await t.patient(docA);
      const dup = await inject(docA, 'PATCH', `/api/patients/${p._id}`, { patientId: taken.patientId });
      assert.equal(dup.statusCode, 409);
    });

    test('get by id returns history, scans and notes with createdBy populated', async () => {
      const p = await t.patient(docA, { name: 'Detail Patient', nextAppointment: '2030-06-10T14:00:00.000Z' });
      const h1 = await inject(docA, 'POST', `/api/patients/${p._id}/medical-history`, {
        condition: 'Hypertension',
        diagnosis: 'Essential (primary) hypertension',
        treatment: 'Lisinopril 10mg daily',
        date: '2024-03-15',
      });
      assert.equal(h1.statusCode, 201);
      const h2 = await inject(docA, 'POST', `/api/patients/${p._id}/medical-history`, {
        condition: 'Migraine',
        diagnosis: 'Migraine without aura',
        treatment: 'Sumatriptan as needed',
      });
      assert.equal(h2.statusCode, 201);
      const history = h2.json();
      assert.equal(history._id, p._id);
      assert.deepEqual(
        history.medicalHistory.map((h: { condition: string }) => h.condition),
        ['Hypertension', 'Migraine'],
      );
      assert.equal(history.medicalHistory[0].date, '2024-03-15T00:00:00.000Z');

      const n1 = await inject(docA, 'POST', `/api/patients/${p._id}/notes`, { content: 'Patient reports occasional headaches' });
      assert.equal(n1.statusCode, 201);
      assert.equal(n1.json().notes[0].createdBy, docA.id);
      assert.ok(!Number.isNaN(Date.parse(n1.json().notes[0].createdAt)));

      const detail = (await inject(docA, 'GET', `/api/patients/${p._id}`)).json();
      assert.equal(detail.nextAppointment, '2030-06-10T14:00:00.000Z');
      assert.equal(detail.medicalHistory.length, 2);
      assert.deepEqual(detail.notes[0].createdBy, { _id: docA.id, name: docA.name });
      assert.equal(detail.notes[0].content, 'Patient reports occasional headaches');
      assert.deepEqual(detail.scans, []);
      assert.deepEqual(detail.assignedDoctors, [{ _id: docA.id, name: docA.name }]);

      const blank = await inject(docA, 'POST', `/api/patients/${p._id}/notes`, { content: '' });
      assert.equal(blank.statusCode, 400);
      assert.match(blank.json().error, /content/);
      const noCondition = await inject(docA, 'POST', `/api/patients/${p._id}/medical-history`, { diagnosis: 'x' });
      assert.equal(noCondition.statusCode, 400);
      assert.match(noCondition.json().error, /condition/);
    });

    test('assign-doctor is admin only and gives the doctor access', async () => {
      const p = await t.patient(docA);
      const byDoctor = await inject(docA, 'POST', `/api/patients/${p._id}/assign-doctor`, { doctorId: docB.id });
      assert.equal(byDoctor.statusCode, 403);
      assert.equal((await inject(docB, 'GET', `/api/patients/${p._id}`)).statusCode, 404);
      const res = await inject(admin, 'POST', `/api/patients/${p._id}/assign-doctor`, { doctorId: docB.id });
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json(), { _id: p._id, assignedDoctors: [docA.id, docB.id] });
      assert.equal((await inject(docB, 'GET', `/api/patients/${p._id}`)).statusCode, 200);
      const again = await inject(admin, 'POST', `/api/patients/${p._id}/assign-doctor`, { doctorId: docB.id });
      assert.deepEqual(again.json().assignedDoctors, [docA.id, docB.id], 'assigning twice is harmless');
      const unknownDoctor = await inject(admin, 'POST', `/api/patients/${p._id}/assign-doctor`, {
        doctorId: '00000000-0000-4000-8000-000000000000',
      });
      assert.equal(unknownDoctor.statusCode, 404);
      assert.deepEqual(unknownDoctor.json(), { error: 'Doctor not found' });
      const notDoctor = await inject(admin, 'POST', `/api/patients/${p._id}/assign-doctor`, { doctorId: admin.id });
      assert.equal(notDoctor.statusCode, 400);
    });

    test('delete is admin only and removes the patient', async () => {
      const p = await t.patient(docA);
      const byDoctor = await inject(docA, 'DELETE', `/api/patients/${p._id}`);
      assert.equal(byDoctor.statusCode, 403);
      const res = await inject(admin, 'DELETE', `/api/patients/${p._id}`);
      assert.equal(res.statusCode, 200);
      assert.deepEqual(res.json(), { message: 'Patient deleted successfully' });
      assert.equal((await inject(admin, 'GET', `/api/patients/${p._id}`)).statusCode, 404);
      assert.equal((await inject(admin, 'DELETE', `/api/patients/${p._id}`)).statusCode, 404);
    });
  });
}
