import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { requireAdmin } from '../auth/hooks.js';
import type { AppContext, Feature } from '../context.js';
import { badRequest } from '../platform/errors.js';
import { authErrors, yearInRange } from '../platform/http/schemas.js';
import { isUuid } from '../platform/ids.js';
import { findPatientByPatientId } from '../patients/repository.js';
import { listAuditEvents, type AuditRow } from './repository.js';
import { AuditListSchema, AuditQuerySchema, type AuditQuery } from './schemas.js';

function instant(value: string | undefined, field: string): Date | undefined {
  if (value === undefined) return undefined;
  const d = new Date(value);
  if (Number.isNaN(d.getTime()) || !yearInRange(d)) throw badRequest(`${field} must be an ISO 8601 date-time between 1900 and 9999`);
  return d;
}

function view(r: AuditRow) {
  return {
    _id: r.id,
    at: r.at.toISOString(),
    actor: r.actorId ? { _id: r.actorId, role: r.actorRole } : null,
    action: r.action,
    resourceType: r.resourceType,
    resourceId: r.resourceId,
    patientIds: r.patientIds,
    ip: r.ip,
    outcome: r.outcome,
    statusCode: r.statusCode,
    detail: r.detail ?? null,
  };
}

async function searchAudit(ctx: AppContext, q: AuditQuery) {
  const from = instant(q.from, 'from');
  const until = instant(q.to, 'to');
  if (from && until && from >= until) throw badRequest('from must be before to');
  let patientRowId: string | undefined;
  if (q.patientId) {
    // The trail keeps record ids; a hospital patientId is resolved while the patient exists.
    patientRowId = isUuid(q.patientId) ? q.patientId : (await findPatientByPatientId(ctx.db, q.patientId))?.id;
    if (!patientRowId) return { events: [], currentPage: q.page, totalPages: 0, totalEvents: 0 };
  }
  const { rows, total } = await listAuditEvents(ctx.db, {
    actorId: q.userId,
    patientRowId,
    action: q.action,
    resourceType: q.resourceType,
    resourceId: q.resourceId,
    outcome: q.outcome,
    from,
    until,
    page: q.page,
    limit: q.limit,
  });
  return { events: rows.map(view), currentPage: q.page, totalPages: Math.ceil(total / q.limit), totalEvents: total };
}

/** GET /api/audit: the audit trail, newest first (admin). Reading it is itself recorded. */
function auditRoutes(ctx: AppContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.addHook('onRequest', ctx.authenticate);
    app.addHook('preHandler', requireAdmin);
    app.get(
      '/',
      {
        config: { audit: { action: 'audit.read', resource: 'audit' } },
        schema: {
          tags: ['Audit'],
          summary: 'The audit trail (admin): filter by user, patient, action, resource, outcome and time; newest first',
          description:
            'Every read, creation, change, export and deletion of patient data, every sign-in and failed sign-in, and every change of a user\'s role or status. Events are append-only (a database trigger refuses UPDATE and DELETE) and hold ids and field names, never values.',
          security: [{ bearerAuth: [] }],
          querystring: AuditQuerySchema,
          response: { 200: AuditListSchema, ...authErrors },
        },
      },
      async (request) => searchAudit(ctx, request.query),
    );
  };
}

/** The audit trail. */
export const auditFeature: Feature = { prefix: '/api/audit', routes: auditRoutes };
