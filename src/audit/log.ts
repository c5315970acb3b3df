/**
 * The audit trail's writer and the Fastify hooks that feed it. A route opts in with
 * `config: { audit: { action, resource } }`; after the answer has gone out (onResponse, off
 * the request's latency), one event is written: who (the signed-in user, or the user a signed
 * link was issued to), what (resource type and id, and every patient whose data it touched),
 * the action, when, from which address, and the outcome from the status code. Events hold
 * ids and field names only: never values, image data, passwords or tokens.
 */
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import type { Db } from '../platform/db/index.js';
import type { AuditOutcome } from '../platform/db/schema.js';
import { isUuid } from '../platform/http/schemas.js';
import { findPatientByPatientId } from '../patients/repository.js';
import { findUserByEmail } from '../users/repository.js';
import { insertAuditEvents, patientsOfScans, type NewAuditRow } from './repository.js';

export type AuditResource = 'patient' | 'scan' | 'user' | 'session' | 'webhook' | 'audit' | 'model';

export interface AuditSpec {
  /** What happened, as `<resource>.<verb>`: patient.read, scan.upload, report.create... */
  action: string;
  resource: AuditResource;
}

/** What a handler (or the signed-link check) knows that the hook cannot see. */
export interface AuditNote {
  actor?: { id: string; role: string | null };
  resourceId?: string;
  patientIds?: string[];
  detail?: Record<string, unknown>;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    audit?: AuditSpec;
  }
  interface FastifyRequest {
    auditNote: AuditNote | null;
    auditPayload: unknown;
  }
}

export interface AuditLog {
  /** Queues one event, built (and its patients resolved) off the request's path. */
  record(build: () => Promise<NewAuditRow | null>, log: FastifyBaseLogger): void;
  /** Resolves once every queued event is written (tests, shutdown). */
  flush(): Promise<void>;
}

export function createAuditLog(db: Db): AuditLog {
  const pending = new Set<Promise<void>>();
  return {
    record(build, log) {
      const p = (async () => {
        try {
          const row = await build();
          if (row) await insertAuditEvents(db, [row]);
        } catch (err) {
          // Logged by kind and code only (platform/logging.ts); the request has been answered.
          log.error({ err }, 'an audit event could not be written');
        }
      })();
      pending.add(p);
      void p.finally(() => pending.delete(p));
    },
    async flush() {
      while (pending.size > 0) await Promise.all([...pending]);
    },
  };
}

/** An audit log that writes nothing: for measuring the trail's own cost, never in production. */
export const noAuditLog: AuditLog = { record: () => undefined, flush: async () => undefined };

export function outcomeOf(statusCode: number): AuditOutcome {
  if (statusCode < 400) return 'success';
  if (statusCode === 401 || statusCode === 403) return 'denied';
  if (statusCode === 404 || statusCode === 410) return 'not_found';
  if (statusCode === 429) return 'throttled';
  if (statusCode >= 500) return 'error';
  return 'invalid';
}

const asRecord = (v: unknown): Record<string, unknown> | null =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
const idsOf = (list: unknown): string[] =>
  Array.isArray(list) ? list.map((item) => asRecord(item)?._id).filter((id): id is string => typeof id === 'string' && isUuid(id)) : [];
const clip = (s: unknown): string | null => (typeof s === 'string' && s !== '' ? s.slice(0, 128) : null);

/** Names of the fields a request changed: which, never what to. */
function changedFields(body: unknown): string[] | undefined {
  const b = asRecord(body);
  return b ? Object.keys(b).slice(0, 30) : undefined;
}

async function describe(db: Db, spec: AuditSpec, request: FastifyRequest, statusCode: number): Promise<NewAuditRow> {
  const note = request.auditNote ?? {};
  const payload = asRecord(request.auditPayload);
  const params = asRecord(request.params) ?? {};
  const body = asRecord(request.body);
  let actor = request.user ? { id: request.user.id, role: request.user.role as string | null } : (note.actor ?? null);
  let resourceId =
    note.resourceId ?? clip(payload?._id) ?? clip(params.id) ?? clip(params.scanId) ?? clip(body?.scanId) ?? null;
  let patientIds = note.patientIds;
  const detail: Record<string, unknown> = { ...(note.detail ?? {}) };
  const ok = statusCode < 400;

  switch (spec.resource) {
    case 'patient': {
      if (!patientIds) {
        const list = idsOf(payload?.patients);
        if (Array.isArray(payload?.patients)) {
          patientIds = list;
          resourceId = null;
          detail.count = list.length;
        } else if (ok && resourceId && isUuid(resourceId)) {
          patientIds = [resourceId];
        } else if (resourceId && spec.action !== 'patient.create') {
          // A refusal still names the patient it was about, when it exists (an admin reading
          // the trail sees probing); a hospital id is resolved to the record.
          const row = isUuid(resourceId) ? null : await findPatientByPatientId(db, resourceId);
          patientIds = row ? [row.id] : isUuid(resourceId) ? [resourceId] : [];
        }
      }
      break;
    }
    case 'scan': {
      if (!patientIds) {
        const list = idsOf(payload?.scans);
        const patientRef = asRecord(payload?.patient);
        if (Array.isArray(payload?.scans)) {
          patientIds = await patientsOfScans(db, list);
          resourceId = null;
          detail.count = list.length;
        } else if (typeof patientRef?._id === 'string') {
          patientIds = [patientRef._id];
        } else if (resourceId && isUuid(resourceId)) {
          patientIds = await patientsOfScans(db, [resourceId]);
        }
      }
      break;
    }
    case 'session': {
      const user = asRecord(payload?.user);
      if (ok && typeof user?._id === 'string') {
        actor = { id: user._id, role: typeof user.role === 'string' ? user.role : null };
        resourceId = user._id;
      } else if (!actor && typeof body?.email === 'string') {
        // A failed sign-in names the account it tried, when there is one; never the email typed.
        const target = await findUserByEmail(db, body.email.trim());
        resourceId = target?.id ?? null;
      }
      break;
    }
    case 'user': {
      const fields = changedFields(body);
      if (fields && request.method !== 'GET') {
        detail.fields = fields.filter((f) => f !== 'password').concat(fields.includes('password') ? ['password (changed)'] : []);
        if (typeof body?.role === 'string') detail.role = body.role;
        if (typeof body?.isActive === 'boolean') detail.isActive = body.isActive;
      }
      break;
    }
    case 'webhook':
    case 'audit':
    case 'model':
      break;
  }
  if (spec.resource === 'patient' && (request.method === 'PATCH' || request.method === 'POST')) {
    const fields = changedFields(body);
    if (fields) detail.fields = fields;
  }
  if (request.method === 'GET' && request.query && Object.keys(request.query).length > 0) {
    // Which filters were used, not their values (a search term can be a patient's name).
    detail.query = Object.keys(request.query).slice(0, 20);
  }
  return {
    actorId: actor?.id ?? null,
    actorRole: actor?.role ?? null,
    action: spec.action,
    resourceType: spec.resource,
    resourceId,
    patientIds: [...new Set(patientIds ?? [])],
    ip: request.ip,
    outcome: outcomeOf(statusCode),
    statusCode,
    detail: Object.keys(detail).length > 0 ? detail : null,
  };
}

/** Root-level hooks: every route whose config names an audit action is recorded. */
export function registerAuditHooks(app: FastifyInstance, deps: { db: Db; audit: AuditLog }): void {
  app.decorateRequest('auditNote', null);
  app.decorateRequest('auditPayload', null);
  app.addHook('preSerialization', async (request, _reply, payload) => {
    if (request.routeOptions.config?.audit) request.auditPayload = payload;
    return payload;
  });
  app.addHook('onResponse', async (request, reply) => {
    const spec = request.routeOptions.config?.audit;
    if (!spec) return;
    const statusCode = reply.statusCode;
    deps.audit.record(() => describe(deps.db, spec, request, statusCode), request.log);
  });
}

/** For a handler: what the hook cannot see (a deleted record's patient, a link's user). */
export function noteAudit(request: FastifyRequest, note: AuditNote): void {
  request.auditNote = { ...(request.auditNote ?? {}), ...note };
}
