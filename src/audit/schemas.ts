import { Type, type Static } from '@sinclair/typebox';
import { IsoDateTime, Nullable, PageQuery } from '../platform/http/schemas.js';

const OutcomeSchema = Type.Union([
  Type.Literal('success'),
  Type.Literal('denied'),
  Type.Literal('not_found'),
  Type.Literal('invalid'),
  Type.Literal('throttled'),
  Type.Literal('error'),
]);

export const AuditQuerySchema = Type.Object(
  {
    ...PageQuery,
    userId: Type.Optional(Type.String({ format: 'uuid', description: 'Who acted (a user _id)' })),
    patientId: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, description: "Events touching this patient (the patient's _id or patientId)" }),
    ),
    action: Type.Optional(Type.String({ maxLength: 64, pattern: '^[a-z]+(\\.[a-z_]+)+$', 'x-pattern-hint': 'an action name such as patient.read or auth.login', description: 'e.g. patient.read, auth.login' })),
    resourceType: Type.Optional(Type.String({ maxLength: 32, pattern: '^[a-z]+$', 'x-pattern-hint': 'a resource type in lowercase letters, such as patient or scan' })),
    resourceId: Type.Optional(Type.String({ maxLength: 128 })),
    outcome: Type.Optional(OutcomeSchema),
    from: Type.Optional(Type.String({ format: 'date-time', description: 'Events at or after this instant' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'Events before this instant' })),
  },
  { additionalProperties: false },
);
export type AuditQuery = Static<typeof AuditQuerySchema>;

const AuditEventSchema = Type.Object({
  _id: Type.String(),
  at: IsoDateTime,
  actor: Nullable(Type.Object({ _id: Type.String(), role: Nullable(Type.String()) })),
  action: Type.String(),
  resourceType: Type.String(),
  resourceId: Nullable(Type.String()),
  patientIds: Type.Array(Type.String()),
  ip: Nullable(Type.String()),
  outcome: OutcomeSchema,
  statusCode: Nullable(Type.Integer()),
  detail: Nullable(Type.Record(Type.String(), Type.Unknown())),
});

export const AuditListSchema = Type.Object({
  events: Type.Array(AuditEventSchema),
  currentPage: Type.Integer(),
  totalPages: Type.Integer(),
  totalEvents: Type.Integer(),
});
