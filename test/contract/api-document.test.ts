/**
 * The API document (../shared/seed/ImageMedix-API.txt) replayed against the app: every request
 * example, in the document's order, with the answer checked against the document's example for
 * status, field names, nesting and types. A client written from the document alone must work.
 *
 * Each `DOC.*` constant is the document's example, transcribed as written (extra fields the
 * server adds are allowed; every field the document shows must be there with the same type).
 * Read it side by side with the document: sections follow it one for one.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { FIXTURES, heatmapMap, runAnalysis, uploadRequest } from '../../src/scans/test-support.js';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../helpers/app.js';
import { databaseKinds } from '../helpers/db.js';

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const OBJECT_ID = '67f46037df638f437b934206';

/**
 * Checks `actual` against the document's `example`: every key of the example is present with
 * the same JSON type (an ISO date where the example shows one; an id where it shows an id);
 * arrays are checked on their first element. Returns the mismatches, by path.
 */
function shapeErrors(actual: unknown, example: unknown, at = '$'): string[] {
  const kind = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);
  if (kind(actual) !== kind(example)) return [`${at}: expected ${kind(example)}, got ${kind(actual)} (${JSON.stringify(actual)})`];
  if (typeof example === 'string' && ISO.test(example) && !ISO.test(actual as string)) {
    return [`${at}: expected an ISO date-time, got "${String(actual)}"`];
  }
  if (Array.isArray(example)) {
    if (example.length === 0) return [];
    const list = actual as unknown[];
    if (list.length === 0) return [`${at}: expected at least one element`];
    return shapeErrors(list[0], example[0], `${at}[0]`);
  }
  if (kind(example) === 'object') {
    const obj = actual as Record<string, unknown>;
    return Object.entries(example as Record<string, unknown>).flatMap(([key, value]) =>
      key in obj ? shapeErrors(obj[key], value, `${at}.${key}`) : [`${at}.${key}: missing`],
    );
  }
  return [];
}

function expectDocumented(res: LightMyRequestResponse, status: number, example: unknown) {
  assert.equal(res.statusCode, status, res.body);
  const errors = shapeErrors(res.json(), example);
  assert.deepEqual(errors, [], `answer differs from the document's example:\n${errors.join('\n')}\n${res.body}`);
  return res.json();
}

// ---------------------------------------------------------------------------------------------
// The document's examples, transcribed.

const DOC = {
  login: {
    response: {
      user: { _id: OBJECT_ID, name: 'Vikram Desai', email: 'user@example.com', role: 'doctor' },
      token: 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...',
    },
  },
  me: { _id: OBJECT_ID, name: 'Vikram Desai', email: 'user@example.com', role: 'doctor', specialization: 'Neurology' },
  upload: {
    _id: '67f460abdf638f437b934239',
    patientId: 'PT-20250505-001',
    patientName: 'Priya Mehta',
    scanDate: '2025-05-01T15:30:00.000Z',
    imageUrl: 'https://api.imagemedix.com/uploads/1744068779585-Brain_tumor_MRI.png',
    status: 'processing',
  },
  scanList: {
    scans: [
      {
        _id: '67f460abdf638f437b934239',
        patientName: 'Priya Mehta',
        scanDate: '2025-05-01T15:30:00.000Z',
        imageUrl: 'https://api.imagemedix.com/uploads/1744068779585-Brain_tumor_MRI.png',
        status: 'completed',
        result: { hasTumor: true, confidence: 0.95, tumorType: 'glioma' },
      },
    ],
    currentPage: 1,
    totalPages: 5,
    totalScans: 42,
  },
  scan: {
    _id: '67f460abdf638f437b934239',
    patientId: 'PT-20250505-001',
    patientName: 'Priya Mehta',
    scanDate: '2025-05-01T15:30:00.000Z',
    imageUrl: 'https://api.imagemedix.com/uploads/1744068779585-Brain tumor MRI.png',
    status: 'completed',
    doctorId: { _id: OBJECT_ID, name: 'Dr. Vikram Desai', email: 'vikram.desai@hospital.com' },
    result: {
      hasTumor: true,
      confidence: 0.95,
      tumorType: 'glioma',
      tumorLocation: 'frontal lobe',
      additionalNotes: 'Tumor appears to be well-defined with minimal surrounding edema.',
    },
    annotations: [{ x: 120, y: 85, text: 'Tumor boundary', createdAt: '2025-05-02T10:15:00.000Z' }],
  },
  scanStatus: { status: 'processing', jobStatus: { state: 'active', progress: 45 } },
  updateScan: {
    request: {
      status: 'completed',
      result: {
        hasTumor: true,
        confidence: 0.92,
        tumorType: 'meningioma',
        additionalNotes: 'Findings suggest further investigation is required.',
      },
    },
    response: {
      _id: '67f460abdf638f437b934239',
      status: 'completed',
      result: {
        hasTumor: true,
        confidence: 0.92,
        tumorType: 'meningioma',
        additionalNotes: 'Findings suggest further investigation is required.',
      },
    },
  },
  annotation: {
    request: { x: 150, y: 200, text: 'Possible secondary lesion' },
    response: {
      _id: '67f460abdf638f437b934239',
      annotations: [{ x: 150, y: 200, text: 'Possible secondary lesion', createdAt: '2025-05-05T14:22:31.456Z' }],
    },
  },
  report: { message: 'Report generated successfully', reportUrl: '/reports/report-67f460abdf638f437b934239.pdf' },
  deleteScan: { message: 'Scan deleted successfully' },
  patientList: {
    patients: [
      {
        _id: '67e46037df638f437b934205',
        name: 'Priya Mehta',
        dateOfBirth: '1980-05-15T00:00:00.000Z',
        gender: 'female',
        status: 'active',
        assignedDoctors: [{ _id: OBJECT_ID, name: 'Dr. Vikram Desai' }],
      },
    ],
    currentPage: 1,
    totalPages: 3,
    totalPatients: 25,
  },
  patient: {
    _id: '67e46037df638f437b934205',
    patientId: 'PT-20250505-001',
    name: 'Priya Mehta',
    dateOfBirth: '1980-05-15T00:00:00.000Z',
    gender: 'female',
    contact: { email: 'priya.mehta@example.com', phone: '555-123-4567', address: '123 Main St, Mumbai' },
    status: 'active',
    medicalHistory: [
      {
        condition: 'Hypertension',
        diagnosis: 'Essential (primary) hypertension',
        treatment: 'Lisinopril 10mg daily',
        date: '2024-03-15T00:00:00.000Z',
      },
    ],
    scans: [{ _id: '67f460abdf638f437b934239', scanDate: '2025-05-01T15:30:00.000Z', status: 'completed' }],
    notes: [
      {
        content: 'Patient reports occasional headaches',
        createdBy: { _id: OBJECT_ID, name: 'Dr. Vikram Desai' },
        createdAt: '2025-04-25T09:30:00.000Z',
      },
    ],
    lastVisit: '2025-04-25T09:30:00.000Z',
    nextAppointment: '2025-06-10T14:00:00.000Z',
  },
  createPatient: {
    request: {
      patientId: 'PT-20250505-002',
      name: 'Raj Sharma',
      dateOfBirth: '1992-08-22',
      gender: 'male',
      contact: { email: 'raj.sharma@example.com', phone: '555-987-6543' },
    },
    response: {
      _id: '67e46037df638f437b934212',
      patientId: 'PT-20250505-002',
      name: 'Raj Sharma',
      dateOfBirth: '1992-08-22T00:00:00.000Z',
      gender: 'male',
      contact: { email: 'raj.sharma@example.com', phone: '555-987-6543' },
      status: 'active',
      assignedDoctors: [OBJECT_ID],
      medicalHistory: [],
      scans: [],
      notes: [],
    },
  },
  updatePatient: {
    request: { contact: { phone: '555-111-2222', address: '456 Oak Ave, Delhi' }, status: 'active' },
    response: {
      _id: '67e46037df638f437b934205',
      patientId: 'PT-20250505-001',
      name: 'Priya Mehta',
      contact: { email: 'priya.mehta@example.com', phone: '555-111-2222', address: '456 Oak Ave, Delhi' },
      status: 'active',
    },
  },
  medicalHistory: {
    request: { condition: 'Migraine', diagnosis: 'Migraine without aura', treatment: 'Sumatriptan as needed' },
    response: {
      _id: '67e46037df638f437b934205',
      medicalHistory: [
        { condition: 'Migraine', diagnosis: 'Migraine without aura', treatment: 'Sumatriptan as needed', date: '2025-05-05T14:30:00.000Z' },
      ],
    },
  },
  note: {
    request: { content: 'Patient reports improved symptom control with current medication regimen.' },
    response: {
      _id: '67e46037df638f437b934205',
      notes: [{ content: 'Patient reports occasional headaches', createdBy: OBJECT_ID, createdAt: '2025-04-25T09:30:00.000Z' }],
    },
  },
  assignDoctor: { response: { _id: '67e46037df638f437b934205', assignedDoctors: [OBJECT_ID, '67f46037df638f437b934215'] } },
  deletePatient: { message: 'Patient deleted successfully' },
  analyze: { jobId: 'analysis_job_6789', status: 'processing' },
  analysisStatus: { status: 'processing', progress: 75, estimatedCompletionTime: '30 seconds' },
  users: [
    {
      _id: OBJECT_ID,
      name: 'Dr. Vikram Desai',
      email: 'vikram.desai@hospital.com',
      role: 'doctor',
      specialization: 'Neurology',
      isActive: true,
    },
  ],
  updateUser: {
    request: { role: 'admin', isActive: true, specialization: 'Chief Radiology' },
    response: {
      _id: '67f46037df638f437b934215',
      name: 'Dr. Ananya Singh',
      email: 'ananya.singh@hospital.com',
      role: 'admin',
      specialization: 'Chief Radiology',
      isActive: true,
    },
  },
  error: { error: 'Error message describing the issue' },
};

const BRAIN_JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));
const CHEST_PNG = readFileSync(path.join(FIXTURES, 'images/chest-normal-1.png'));

for (const kind of await databaseKinds()) {
  describe(`the API document, example by example (${kind})`, () => {
    let t: TestApp;
    let admin: TestUser;
    let doctor: TestUser;
    let token: string;
    // What the walk carries from one example to the next, as a client would.
    const state = { scanId: '', chestScanId: '', patientId: '', patient_id: '', newPatientId: '' };
    const auth = () => ({ authorization: `Bearer ${token}` });
    const call = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: object, headers = auth()) =>
      t.app.inject({ method, url, headers, ...(payload ? { payload } : {}) });

    before(async () => {
      t = await createTestApp(kind, { env: { PUBLIC_URL: '' } });
      admin = await t.user({ role: 'admin', name: 'Dr. Admin', specialization: 'Radiology' });
      doctor = await t.user({ name: 'Dr. Vikram Desai', specialization: 'Neurology' });
    });
    after(() => t.close());

    // Authentication -----------------------------------------------------------------------

    test('POST /api/auth/login', async () => {
      const res = await t.app.inject({ method: 'POST', url: '/api/auth/login', payload: { email: doctor.email, password: doctor.password } });
      const body = expectDocumented(res, 200, DOC.login.response);
      assert.equal(body.user.role, 'doctor');
      token = body.token;
    });

    test('GET /api/auth/google and /api/auth/google/callback (Google not configured here: the error shape)', async () => {
      for (const url of ['/api/auth/google', '/api/auth/google/callback']) {
        expectDocumented(await call('GET', url, undefined, {} as ReturnType<typeof auth>), 404, DOC.error);
      }
    });

    test('GET /api/auth/me', async () => {
      const body = expectDocumented(await call('GET', '/api/auth/me'), 200, DOC.me);
      assert.equal(body._id, doctor.id);
    });

    // Scans --------------------------------------------------------------------------------

    test('POST /api/scans (multipart: image, patientId, patientName, scanDate)', async () => {
      state.patientId = uniqueId();
      const fields = { patientId: state.patientId, patientName: 'Priya Mehta', scanDate: '2025-05-01T15:30:00.000Z' };
      const request = uploadRequest(null, { data: BRAIN_JPEG, filename: 'Brain_tumor_MRI.jpg', fields });
      const res = await t.app.inject({ ...request, headers: { ...request.headers, ...auth() } });
      const body = expectDocumented(res, 201, DOC.upload);
      assert.equal(body.status, 'processing');
      assert.equal(body.scanDate, '2025-05-01T15:30:00.000Z');
      state.scanId = body._id;
      // The analysis runs as the worker would (the model itself is tested in src/analysis).
      await runAnalysis(t, state.scanId, {
        refused: false,
        scanType: 'brain-mri',
        model: { id: 'brain-mri', version: '1.0.0' },
        result: {
          scanType: 'brain-mri',
          hasTumor: true,
          tumorType: 'glioma',
          confidence: 0.95,
          probabilities: { glioma: 0.95, meningioma: 0.02, notumor: 0.02, pituitary: 0.01 },
          tumorLocation: 'upper left',
          operatingPoint: 'argmax',
          calibration: 'model',
          model: { id: 'brain-mri', version: '1.0.0' },
        },
        heatmapMap: heatmapMap(),
        hotRegion: { x: 1, y: 1, width: 10, height: 10 },
      });
    });

    test('GET /api/scans (page, limit, status, patientId, startDate, endDate)', async () => {
      const query = `page=1&limit=10&status=completed&patientId=${state.patientId}&startDate=2025-05-01&endDate=2025-05-31`;
      const body = expectDocumented(await call('GET', `/api/scans?${query}`), 200, DOC.scanList);
      assert.equal(body.scans[0]._id, state.scanId);
      assert.equal(body.totalScans, 1);
    });

    test('GET /api/scans/:id', async () => {
      await call('POST', `/api/scans/${state.scanId}/annotations`, { x: 120, y: 85, text: 'Tumor boundary' });
      await call('PATCH', `/api/scans/${state.scanId}`, {
        result: { tumorLocation: 'frontal lobe', additionalNotes: 'Tumor appears to be well-defined with minimal surrounding edema.' },
      });
      const body = expectDocumented(await call('GET', `/api/scans/${state.scanId}`), 200, DOC.scan);
      assert.equal(body.doctorId._id, doctor.id);
      assert.equal(body.result.tumorLocation, 'frontal lobe');
    });

    test('GET /api/scans/:id/status', async () => {
      const chest = await t.app.inject(
        uploadRequest(doctor, { data: CHEST_PNG, fields: { patientId: state.patientId, scanType: 'chest-xray' } }),
      );
      state.chestScanId = chest.json()._id;
      const body = expectDocumented(await call('GET', `/api/scans/${state.chestScanId}/status`), 200, DOC.scanStatus);
      assert.ok(['waiting', 'active', 'completed', 'failed'].includes(body.jobStatus.state), body.jobStatus.state);
      assert.equal(expectDocumented(await call('GET', `/api/scans/${state.scanId}/status`), 200, DOC.scanStatus).jobStatus.state, 'completed');
    });

    test('PATCH /api/scans/:id', async () => {
      const body = expectDocumented(await call('PATCH', `/api/scans/${state.scanId}`, DOC.updateScan.request), 200, DOC.updateScan.response);
      assert.deepEqual(
        [body.result.tumorType, body.result.confidence, body.result.additionalNotes],
        ['meningioma', 0.92, 'Findings suggest further investigation is required.'],
      );
    });

    test('POST /api/scans/:id/annotations', async () => {
      const body = expectDocumented(
        await call('POST', `/api/scans/${state.scanId}/annotations`, DOC.annotation.request),
        201,
        DOC.annotation.response,
      );
      assert.equal(body.annotations.at(-1).text, 'Possible secondary lesion');
    });

    test('POST /api/scans/:id/report, then the reportUrl and the documented path', async () => {
      const body = expectDocumented(await call('POST', `/api/scans/${state.scanId}/report`), 201, DOC.report);
      assert.match(body.reportUrl, new RegExp(`^/reports/report-${state.scanId}`));
      assert.equal((await t.app.inject({ url: body.reportUrl })).headers['content-type'], 'application/pdf');
      assert.equal((await call('GET', `/reports/report-${state.scanId}.pdf`)).statusCode, 200);
    });

    test('DELETE /api/scans/:id (admin only)', async () => {
      expectDocumented(await call('DELETE', `/api/scans/${state.chestScanId}`), 403, DOC.error);
      const res = await t.app.inject({ method: 'DELETE', url: `/api/scans/${state.chestScanId}`, headers: admin.auth });
      expectDocumented(res, 200, DOC.deleteScan);
    });

    // Patients -----------------------------------------------------------------------------

    test('GET /api/patients (page, limit, status, search)', async () => {
      await call('PATCH', `/api/patients/${state.patientId}`, { dateOfBirth: '1980-05-15', gender: 'female' });
      const body = expectDocumented(await call('GET', '/api/patients?page=1&limit=10&status=active&search=Priya'), 200, DOC.patientList);
      assert.ok(body.patients.some((p: { patientId: string }) => p.patientId === state.patientId));
    });

    test('GET /api/patients/:id', async () => {
      await call('PATCH', `/api/patients/${state.patientId}`, {
        contact: { email: 'priya.mehta@example.com', phone: '555-123-4567', address: '123 Main St, Mumbai' },
        lastVisit: '2025-04-25T09:30:00.000Z',
        nextAppointment: '2025-06-10T14:00:00.000Z',
      });
      await call('POST', `/api/patients/${state.patientId}/medical-history`, {
        condition: 'Hypertension',
        diagnosis: 'Essential (primary) hypertension',
        treatment: 'Lisinopril 10mg daily',
        date: '2024-03-15',
      });
      await call('POST', `/api/patients/${state.patientId}/notes`, { content: 'Patient reports occasional headaches' });
      const body = expectDocumented(await call('GET', `/api/patients/${state.patientId}`), 200, DOC.patient);
      state.patient_id = body._id;
      assert.equal(body.notes[0].createdBy._id, doctor.id);
    });

    test('POST /api/patients', async () => {
      const request = { ...DOC.createPatient.request, patientId: uniqueId() };
      const body = expectDocumented(await call('POST', '/api/patients', request), 201, DOC.createPatient.response);
      assert.equal(body.dateOfBirth, '1992-08-22T00:00:00.000Z');
      assert.deepEqual(body.assignedDoctors, [doctor.id]);
      state.newPatientId = body._id;
    });

    test('PATCH /api/patients/:id', async () => {
      const body = expectDocumented(
        await call('PATCH', `/api/patients/${state.patient_id}`, DOC.updatePatient.request),
        200,
        DOC.updatePatient.response,
      );
      assert.deepEqual(body.contact, { email: 'priya.mehta@example.com', phone: '555-111-2222', address: '456 Oak Ave, Delhi' });
    });

    test('POST /api/patients/:id/medical-history', async () => {
      const body = expectDocumented(
        await call('POST', `/api/patients/${state.patient_id}/medical-history`, DOC.medicalHistory.request),
        201,
        DOC.medicalHistory.response,
      );
      assert.deepEqual(
        body.medicalHistory.map((h: { condition: string }) => h.condition),
        ['Hypertension', 'Migraine'],
      );
    });

    test('POST /api/patients/:id/notes', async () => {
      const body = expectDocumented(await call('POST', `/api/patients/${state.patient_id}/notes`, DOC.note.request), 201, DOC.note.response);
      assert.equal(body.notes.length, 2, 'notes are kept, never replaced');
      assert.equal(body.notes[1].createdBy, doctor.id);
    });

    test('POST /api/patients/:id/assign-doctor (admin only)', async () => {
      const other = await t.user({ name: 'Dr. Ananya Singh', specialization: 'Radiology' });
      expectDocumented(await call('POST', `/api/patients/${state.patient_id}/assign-doctor`, { doctorId: other.id }), 403, DOC.error);
      const res = await t.app.inject({
        method: 'POST',
        url: `/api/patients/${state.patient_id}/assign-doctor`,
        headers: admin.auth,
        payload: { doctorId: other.id },
      });
      const body = expectDocumented(res, 200, DOC.assignDoctor.response);
      assert.deepEqual(body.assignedDoctors, [doctor.id, other.id]);
    });

    test('DELETE /api/patients/:id (admin only)', async () => {
      const res = await t.app.inject({ method: 'DELETE', url: `/api/patients/${state.newPatientId}`, headers: admin.auth });
      expectDocumented(res, 200, DOC.deletePatient);
    });

    // ML Analysis --------------------------------------------------------------------------

    test('POST /api/ml/brain/analyze and /api/ml/chest/analyze', async () => {
      const brain = expectDocumented(await call('POST', '/api/ml/brain/analyze', { scanId: state.scanId }), 200, DOC.analyze);
      assert.equal(brain.status, 'processing');
      const chest = await t.app.inject(
        uploadRequest(doctor, { data: CHEST_PNG, fields: { patientId: state.patientId, scanType: 'chest-xray' } }),
      );
      state.chestScanId = chest.json()._id;
      expectDocumented(await call('POST', '/api/ml/chest/analyze', { scanId: state.chestScanId }), 200, DOC.analyze);
    });

    test('GET /api/ml/status/:scanId', async () => {
      const body = expectDocumented(await call('GET', `/api/ml/status/${state.chestScanId}`), 200, DOC.analysisStatus);
      assert.match(body.estimatedCompletionTime, /^\d+ (seconds?|minutes|hours)$/);
    });

    // Users (admin only) -------------------------------------------------------------------

    test('GET /api/users/users', async () => {
      expectDocumented(await call('GET', '/api/users/users'), 403, DOC.error);
      const res = await t.app.inject({ url: '/api/users/users', headers: admin.auth });
      const body = expectDocumented(res, 200, DOC.users);
      assert.ok(body.some((u: { _id: string }) => u._id === doctor.id));
    });

    test('PATCH /api/users/users/:id', async () => {
      const ananya = await t.user({ name: 'Dr. Ananya Singh', specialization: 'Radiology' });
      const res = await t.app.inject({
        method: 'PATCH',
        url: `/api/users/users/${ananya.id}`,
        headers: admin.auth,
        payload: DOC.updateUser.request,
      });
      const body = expectDocumented(res, 200, DOC.updateUser.response);
      assert.deepEqual([body.role, body.specialization], ['admin', 'Chief Radiology']);
    });

    // Error handling, status codes, rate limiting ------------------------------------------

    test('every error is {"error": "..."} with the documented status codes', async () => {
      expectDocumented(await call('GET', '/api/scans?page=0'), 400, DOC.error);
      expectDocumented(await call('GET', '/api/auth/me', undefined, { authorization: 'Bearer nope' }), 401, DOC.error);
      expectDocumented(await call('DELETE', `/api/patients/${state.patient_id}`), 403, DOC.error);
      expectDocumented(await call('GET', '/api/scans/00000000-0000-4000-8000-000000000000'), 404, DOC.error);
    });

    test('the OpenAPI document describes the un-assign route, the link shapes and the review merge rules', async () => {
      const openapi = (await t.app.inject({ url: '/openapi.json' })).json();
      const unassign = openapi.paths['/api/patients/{id}/assign-doctor/{doctorId}']?.delete;
      assert.ok(unassign, 'DELETE /api/patients/{id}/assign-doctor/{doctorId} is documented');
      assert.ok(unassign.responses['409'], 'with its 409 for the last doctor');
      const text = JSON.stringify(openapi);
      assert.match(text, /a relative path `\/files\/scans\/<first two characters of _id>\/<_id>\.image\.png\?expires=/);
      assert.match(text, /a relative path `\/reports\/report-<scanId>-<reportId>\.pdf\?expires=/);
      assert.match(text, /the documented `\/reports\/report-<scanId>\.pdf`/);
      const patch = JSON.stringify(openapi.paths['/api/scans/{id}'].patch.requestBody);
      assert.match(patch, /a field left out keeps its value; `null` clears it/);
      assert.match(patch, /brain-mri `hasTumor`, `tumorType` \(glioma, meningioma, pituitary\)/);
      assert.match(patch, /`confidence` must be sent/);
    });

    test('rate limit headers are on the responses', async () => {
      const res = await call('GET', '/api/auth/me');
      for (const header of ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset']) {
        assert.match(String(res.headers[header]), /^\d+$/, header);
      }
    });
  });
}
