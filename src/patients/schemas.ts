import { Type, type Static } from '@sinclair/typebox';
import { DateOrDateTime, IsoDateTime, Line, Nullable, PageQuery, Text } from '../platform/http/schemas.js';

const PatientStatusSchema = Type.Union([Type.Literal('active'), Type.Literal('inactive'), Type.Literal('archived')]);
const GenderSchema = Type.Union([
  Type.Literal('male'),
  Type.Literal('female'),
  Type.Literal('other'),
  Type.Literal('unknown'),
]);

const DateTimeInput = Type.String({ format: 'date-time', description: 'ISO 8601 date-time' });

const ContactSchema = Type.Object(
  {
    email: Type.Optional(Type.String({ format: 'email', maxLength: 254 })),
    phone: Type.Optional(Type.String({ maxLength: 50 })),
    address: Type.Optional(Type.String({ maxLength: 500 })),
  },
  { additionalProperties: false },
);

/** In a PATCH, `null` removes a contact field; absent fields keep their value. */
const ContactPatchSchema = Type.Object(
  {
    email: Type.Optional(Nullable(Type.String({ format: 'email', maxLength: 254 }))),
    phone: Type.Optional(Nullable(Type.String({ maxLength: 50 }))),
    address: Type.Optional(Nullable(Type.String({ maxLength: 500 }))),
  },
  { additionalProperties: false },
);

const PatientIdString = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._\\-/]*$',
  'x-pattern-hint': '1-64 letters, digits or . _ - / starting with a letter or digit, e.g. PT-20250505-001',
  description: "The hospital's patient identifier, e.g. PT-20250505-001",
});

export const CreatePatientBodySchema = Type.Object(
  {
    patientId: PatientIdString,
    name: Line({ maxLength: 200 }),
    dateOfBirth: Type.Optional(Nullable(DateOrDateTime)),
    gender: Type.Optional(Nullable(GenderSchema)),
    contact: Type.Optional(ContactSchema),
    status: Type.Optional(PatientStatusSchema),
    lastVisit: Type.Optional(Nullable(DateTimeInput)),
    nextAppointment: Type.Optional(Nullable(DateTimeInput)),
  },
  { additionalProperties: false },
);
export type CreatePatientBody = Static<typeof CreatePatientBodySchema>;

export const UpdatePatientBodySchema = Type.Object(
  {
    patientId: Type.Optional(PatientIdString),
    name: Type.Optional(Line({ maxLength: 200 })),
    dateOfBirth: Type.Optional(Nullable(DateOrDateTime)),
    gender: Type.Optional(Nullable(GenderSchema)),
    contact: Type.Optional(ContactPatchSchema),
    status: Type.Optional(PatientStatusSchema),
    lastVisit: Type.Optional(Nullable(DateTimeInput)),
    nextAppointment: Type.Optional(Nullable(DateTimeInput)),
  },
  { additionalProperties: false, minProperties: 1 },
);
export type UpdatePatientBody = Static<typeof UpdatePatientBodySchema>;

export const ListPatientsQuerySchema = Type.Object(
  {
    ...PageQuery,
    status: Type.Optional(PatientStatusSchema),
    search: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);

export const MedicalHistoryBodySchema = Type.Object(
  {
    condition: Line({ maxLength: 500 }),
    diagnosis: Type.Optional(Type.String({ maxLength: 2000 })),
    treatment: Type.Optional(Type.String({ maxLength: 2000 })),
    date: Type.Optional(DateOrDateTime),
  },
  { additionalProperties: false },
);

export const NoteBodySchema = Type.Object(
  { content: Text({ maxLength: 10_000 }) },
  { additionalProperties: false },
);

export const AssignDoctorBodySchema = Type.Object(
  { doctorId: Type.String({ minLength: 1, maxLength: 64 }) },
  { additionalProperties: false },
);

const DoctorRef = Type.Object({ _id: Type.String(), name: Type.String() });

const MedicalHistoryEntrySchema = Type.Object({
  _id: Type.String(),
  condition: Type.String(),
  diagnosis: Nullable(Type.String()),
  treatment: Nullable(Type.String()),
  date: IsoDateTime,
});

const PatientCore = {
  _id: Type.String(),
  patientId: Type.String(),
  name: Type.String(),
  dateOfBirth: Nullable(IsoDateTime),
  gender: Nullable(Type.String()),
  contact: ContactSchema,
  status: PatientStatusSchema,
  lastVisit: Nullable(IsoDateTime),
  nextAppointment: Nullable(IsoDateTime),
  createdAt: IsoDateTime,
  updatedAt: IsoDateTime,
};

const PatientListItemSchema = Type.Object({ ...PatientCore, assignedDoctors: Type.Array(DoctorRef) });

export const PatientListSchema = Type.Object({
  patients: Type.Array(PatientListItemSchema),
  currentPage: Type.Integer(),
  totalPages: Type.Integer(),
  totalPatients: Type.Integer(),
});

export const PatientDetailSchema = Type.Object({
  ...PatientCore,
  assignedDoctors: Type.Array(DoctorRef),
  medicalHistory: Type.Array(MedicalHistoryEntrySchema),
  scans: Type.Array(
    Type.Object({ _id: Type.String(), scanDate: IsoDateTime, status: Type.String(), scanType: Nullable(Type.String()) }),
  ),
  notes: Type.Array(
    Type.Object({ _id: Type.String(), content: Type.String(), createdBy: Nullable(DoctorRef), createdAt: IsoDateTime }),
  ),
});

/** As the API document shows for create and update: assigned doctors by id. */
export const PatientRecordSchema = Type.Object({
  ...PatientCore,
  assignedDoctors: Type.Array(Type.String()),
  medicalHistory: Type.Array(MedicalHistoryEntrySchema),
  scans: Type.Array(Type.Object({ _id: Type.String(), scanDate: IsoDateTime, status: Type.String() })),
  notes: Type.Array(
    Type.Object({ _id: Type.String(), content: Type.String(), createdBy: Nullable(Type.String()), createdAt: IsoDateTime }),
  ),
});

export const MedicalHistoryResponseSchema = Type.Object({
  _id: Type.String(),
  medicalHistory: Type.Array(MedicalHistoryEntrySchema),
});

export const NotesResponseSchema = Type.Object({
  _id: Type.String(),
  notes: Type.Array(
    Type.Object({ _id: Type.String(), content: Type.String(), createdBy: Nullable(Type.String()), createdAt: IsoDateTime }),
  ),
});

export const AssignDoctorResponseSchema = Type.Object({
  _id: Type.String(),
  assignedDoctors: Type.Array(Type.String()),
});

export const UnassignDoctorParamsSchema = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 128, description: 'The patient _id or patientId' }),
  doctorId: Type.String({ minLength: 1, maxLength: 64, description: 'The doctor _id' }),
});
