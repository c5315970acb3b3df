import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { currentUser, requireAdmin } from '../auth/hooks.js';
import { noteAudit } from '../audit/log.js';
import type { AppContext, Feature } from '../context.js';
import { authErrors, ErrorSchema, IdParamsSchema, MessageSchema } from '../platform/http/schemas.js';
import {
  AssignDoctorBodySchema,
  AssignDoctorResponseSchema,
  CreatePatientBodySchema,
  ListPatientsQuerySchema,
  MedicalHistoryBodySchema,
  MedicalHistoryResponseSchema,
  NoteBodySchema,
  NotesResponseSchema,
  PatientDetailSchema,
  PatientListSchema,
  PatientRecordSchema,
  UnassignDoctorParamsSchema,
  UpdatePatientBodySchema,
} from './schemas.js';
import * as patients from './service.js';

/** The uniqueness rule for hospital ids, as the OpenAPI document states it (SECURITY.md). */
const PATIENT_ID_RULE =
  'A patientId is unique at the site. One already in use is refused to everyone with the same 409 ' +
  '("patientId X is already in use at this site: ..."), whether or not you may see that patient: ' +
  'the answer never says whose it is. An upload naming a patientId in use by a patient you may not see gets the same 409.';

function patientRoutes(ctx: AppContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.addHook('onRequest', ctx.authenticate);
    const tags = ['Patients'];
    const security = [{ bearerAuth: [] }];

    app.get(
      '/',
      {
        config: { audit: { action: 'patient.list', resource: 'patient' } },
        schema: {
          tags,
          security,
          summary: 'List the patients you may see (all for admins, assigned ones for doctors)',
          querystring: ListPatientsQuerySchema,
          response: { 200: PatientListSchema, ...authErrors },
        },
      },
      async (request) => patients.listPatients(ctx.db, { viewer: currentUser(request), filter: request.query }),
    );

    app.get(
      '/:id',
      {
        config: { audit: { action: 'patient.read', resource: 'patient' } },
        schema: {
          tags,
          security,
          summary: 'A patient by _id or patientId, with scans, notes and medical history',
          params: IdParamsSchema,
          response: { 200: PatientDetailSchema, ...authErrors },
        },
      },
      async (request) => patients.getPatient(ctx.db, { viewer: currentUser(request), id: request.params.id }),
    );

    app.post(
      '/',
      {
        config: { audit: { action: 'patient.create', resource: 'patient' } },
        schema: {
          tags,
          security,
          summary: 'Create a patient (assigned to its creator)',
          description: PATIENT_ID_RULE,
          body: CreatePatientBodySchema,
          response: { 201: PatientRecordSchema, ...authErrors, 409: ErrorSchema },
        },
      },
      async (request, reply) => {
        const patient = await patients.createPatient(ctx.db, { viewer: currentUser(request), input: request.body });
        request.log.info({ patient: patient._id }, 'patient created');
        return reply.code(201).send(patient);
      },
    );

    app.patch(
      '/:id',
      {
        config: { audit: { action: 'patient.update', resource: 'patient' } },
        schema: {
          tags,
          security,
          summary: 'Update a patient; contact fields are merged (null removes one)',
          description: PATIENT_ID_RULE,
          params: IdParamsSchema,
          body: UpdatePatientBodySchema,
          response: { 200: PatientRecordSchema, ...authErrors, 409: ErrorSchema },
        },
      },
      async (request) =>
        patients.updatePatient(ctx.db, { viewer: currentUser(request), id: request.params.id, input: request.body }),
    );

    app.post(
      '/:id/medical-history',
      {
        config: { audit: { action: 'patient.add_history', resource: 'patient' } },
        schema: {
          tags,
          security,
          summary: 'Add a medical history entry',
          params: IdParamsSchema,
          body: MedicalHistoryBodySchema,
          response: { 201: MedicalHistoryResponseSchema, ...authErrors },
        },
      },
      async (request, reply) => {
        const out = await patients.addMedicalHistory(ctx.db, {
          viewer: currentUser(request),
          id: request.params.id,
          entry: request.body,
        });
        return reply.code(201).send(out);
      },
    );

    app.post(
      '/:id/notes',
      {
        config: { audit: { action: 'patient.add_note', resource: 'patient' } },
        schema: {
          tags,
          security,
          summary: 'Add a note',
          params: IdParamsSchema,
          body: NoteBodySchema,
          response: { 201: NotesResponseSchema, ...authErrors },
        },
      },
      async (request, reply) => {
        const out = await patients.addNote(ctx.db, {
          viewer: currentUser(request),
          id: request.params.id,
          content: request.body.content,
        });
        return reply.code(201).send(out);
      },
    );

    app.post(
      '/:id/assign-doctor',
      {
        config: { audit: { action: 'patient.assign_doctor', resource: 'patient' } },
        preHandler: requireAdmin,
        schema: {
          tags,
          security,
          summary: 'Assign a doctor to a patient (admin)',
          params: IdParamsSchema,
          body: AssignDoctorBodySchema,
          response: { 200: AssignDoctorResponseSchema, ...authErrors },
        },
      },
      async (request) =>
        patients.assignDoctorToPatient(ctx.db, {
          viewer: currentUser(request),
          id: request.params.id,
          doctorId: request.body.doctorId,
        }),
    );

    app.delete(
      '/:id/assign-doctor/:doctorId',
      {
        config: { audit: { action: 'patient.unassign_doctor', resource: 'patient' } },
        preHandler: requireAdmin,
        schema: {
          tags,
          security,
          summary: 'Un-assign a doctor from a patient (admin)',
          description:
            "Answers like the assignment, with the remaining assignedDoctors. 404 when the doctor is not assigned to the patient; 409 when it is the patient's only assigned doctor (assign another first).",
          params: UnassignDoctorParamsSchema,
          response: { 200: AssignDoctorResponseSchema, ...authErrors, 409: ErrorSchema },
        },
      },
      async (request) => {
        noteAudit(request, { detail: { doctorId: request.params.doctorId } });
        return patients.unassignDoctorFromPatient(ctx.db, {
          viewer: currentUser(request),
          id: request.params.id,
          doctorId: request.params.doctorId,
        });
      },
    );

    app.delete(
      '/:id',
      {
        config: { audit: { action: 'patient.delete', resource: 'patient' } },
        preHandler: requireAdmin,
        schema: {
          tags,
          security,
          summary: 'Delete a patient with their scans and stored files (admin)',
          params: IdParamsSchema,
          response: { 200: MessageSchema, ...authErrors },
        },
      },
      async (request) => {
        const { id, scanIds } = await patients.deletePatient(ctx.db, {
          viewer: currentUser(request),
          id: request.params.id,
          storage: ctx.storage,
          log: request.log,
        });
        noteAudit(request, { resourceId: id, patientIds: [id], detail: { scans: scanIds.length } });
        request.log.info({ patient: id, scans: scanIds.length }, 'patient deleted');
        return { message: 'Patient deleted successfully' };
      },
    );
  };
}

/** Patients. */
export const patientsFeature: Feature = { prefix: '/api/patients', routes: patientRoutes };
