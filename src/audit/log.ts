/**
 * The audit trail's writer and the Fastify hooks that feed it. A route opts in with
 * `config: { audit: { action, resource } }`; once the answer is ready and before any byte of it
 * leaves (onSend), its event is committed: who (the signed-in user, or the user a signed link
 * was issued to), what (resource type and id, and every patient whose data it touched), the
 * action, when, from which address, and the outcome from the status code. A request that
 * handed out signed links to files records their issuing as a second event (`link.issue`).
 * If the events cannot be written, the client gets a 503 instead of the answer: no patient
 * data leaves without its trace, and a crash after the answer cannot lose the trace. A request
 * whose own statement can commit its events with its writes (an upload) builds them beforehand
 * with auditInAdvance; the hook then writes nothing more unless its answer's status differs. Events
 * hold ids and field names only: never values, image data, passwords or tokens.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Db } from '../platform/db/index.js';
import { isDatabaseUnreachable } from '../platform/db/errors.js';
import type { AuditOutcome } from '../platform/db/schema.js';
import { databaseUnreachable, RETRY_AFTER_SECONDS } from '../platform/errors.js';
import { scrubError } from '../platform/logging.js';
import { isUuid } from '../platform/ids.js';
import { findPatientByPatientId } from '../patients/repository.js';
import { findUserByEmail } from '../users/repository.js';
import { insertAuditEvents, patientsOfScans, STATEMENT_PATIENT, type NewAuditRow } from './repository.js';

type AuditResource = 'patient' | 'scan' | 'user' | 'session' | 'webhook' | 'audit' | 'model' | 'address';

interface AuditSpec {
  /** What happened, as `<resource>.<verb>`: patient.read, scan.upload, report.create... */
  action: string;
  resource: AuditResource;
}

/** What a handler (or the signed-link check) knows that the hook cannot see. */
export interface AuditNote {
  actor?: { id: string; role: string | null };
  resourceId?: string;
  patientIds?: string[];
  /** Scans the request was about, when no single id names them (their patients are looked up). */
  scanIds?: string[];
  detail?: Record<string, unknown>;
  /** When the status code does not tell (a sign-in that ends in a redirect either way). */
  outcome?: AuditOutcome;
}

/** Which stored files a signed link was issued for. */
export type LinkKind = 'image' | 'thumbnail' | 'heatmap' | 'report' | 'file';

declare module 'fastify' {
  interface FastifyContextConfig {
    audit?: AuditSpec;
  }
  interface FastifyRequest {
    auditNote: AuditNote | null;
    auditPayload: unknown;
    /** Signed links this request handed out, per scan (see noteLinkIssued). */
    issuedLinks: Map<string, Set<LinkKind>> | null;
    auditWritten: boolean;
    /** Events committed by the request's own statement (auditInAdvance), with their patients. */
    auditCommitted: NewAuditRow[] | null;
  }
}

export interface AuditLog {
  /** Commits the events; resolves once they are stored, rejects when they could not be. */
  write(rows: NewAuditRow[]): Promise<void>;
}

export function createAuditLog(db: Db): AuditLog {
  return groupCommit((rows) => insertAuditEvents(db, rows));
}

/** Rows per shared INSERT: a burst of list requests still makes a few statements, not one huge one. */
const MAX_GROUP_ROWS = 500;

/**
 * Group commit: the events of requests that finish in the same moment share one multi-row
 * INSERT (one statement and one round trip instead of one per request, the cost that showed in
 * every read's profile). Each write still resolves only once its own rows are committed and
 * rejects when they are not, so an answer is withheld exactly as before. A shared INSERT is
 * atomic: when it fails, each write of the group is tried again on its own, so one request's
 * unstorable row cannot withhold the other answers. Writes gather while the previous INSERT
 * runs (and for one turn of the event loop), so an idle server waits for nothing.
 */
export function groupCommit(insert: (rows: NewAuditRow[]) => Promise<void>): AuditLog {
  type Waiting = { rows: NewAuditRow[]; resolve: () => void; reject: (err: unknown) => void };
  const queue: Waiting[] = [];
  let running = false;

  async function flush(): Promise<void> {
    running = true;
    while (queue.length > 0) {
      const group: Waiting[] = [];
      let size = 0;
      while (queue.length > 0 && (group.length === 0 || size + queue[0]!.rows.length <= MAX_GROUP_ROWS)) {
        const next = queue.shift()!;
        group.push(next);
        size += next.rows.length;
      }
      try {
        await insert(group.flatMap((w) => w.rows));
        for (const w of group) w.resolve();
      } catch (err) {
        if (group.length === 1) group[0]!.reject(err);
        else await Promise.all(group.map((w) => insert(w.rows).then(w.resolve, w.reject)));
      }
    }
    running = false;
  }

  return {
    write(rows) {
      if (rows.length === 0) return Promise.resolve();
      return new Promise<void>((resolve, reject) => {
        queue.push({ rows, resolve, reject });
        if (!running) {
          running = true;
          setImmediate(() => void flush());
        }
      });
    },
  };
}

/** An audit log that writes nothing: for measuring the trail's own cost, never in production. */
export const noAuditLog: AuditLog = { write: async () => undefined };

function outcomeOf(statusCode: number): AuditOutcome {
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
/**
 * Text as the database will take it: what a hostile request sent (a NUL in a path id, a lone
 * surrogate in a body key) is recorded with the offending characters replaced, so it can never
 * make the event fail to write and the answer be withheld.
 */
const UNSTORABLE = /[\u0000-\u001f\u007f]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const storable = (s: string): string => s.replace(UNSTORABLE, '\ufffd');
const clip = (s: unknown): string | null => (typeof s === 'string' && s !== '' ? storable(s.slice(0, 128)) : null);

/** Names of the fields a request changed: which, never what to. */
function changedFields(body: unknown): string[] | undefined {
  const b = asRecord(body);
  return b ? Object.keys(b).slice(0, 30).map((k) => storable(k.slice(0, 64))) : undefined;
}

async function describe(
  db: Db,
  spec: AuditSpec,
  request: FastifyRequest,
  statusCode: number,
  { note = request.auditNote ?? {}, answer = request.auditPayload }: { note?: AuditNote; answer?: unknown } = {},
): Promise<NewAuditRow> {
  const payload = asRecord(answer);
  const params = asRecord(request.params) ?? {};
  const body = asRecord(request.body);
  let actor = request.user ? { id: request.user.id, role: request.user.role as string | null } : (note.actor ?? null);
  let resourceId =
    note.resourceId ?? clip(payload?._id) ?? clip(params.id) ?? clip(params.scanId) ?? clip(params.ip) ?? clip(body?.scanId) ?? null;
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
      if (!patientIds && note.scanIds) {
        const ids = note.scanIds.filter(isUuid);
        patientIds = await patientsOfScans(db, ids);
        if (ids.length === 1) resourceId = ids[0]!;
        detail.scans = note.scanIds.length;
      } else if (Array.isArray(payload?.scans)) {
        // A list: the handler usually noted its page's patients (no query then).
        const list = idsOf(payload.scans);
        patientIds ??= await patientsOfScans(db, list);
        resourceId = null;
        detail.count = list.length;
      } else if (!patientIds) {
        const patientRef = asRecord(payload?.patient);
        if (typeof patientRef?._id === 'string') {
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
      } else if (!actor && typeof body?.email === 'string' && body.email.length <= 254 && storable(body.email) === body.email) {
        // A failed sign-in names the account it tried, when there is one; never the email typed.
        const target = await findUserByEmail(db, body.email.trim());
        resourceId = target?.id ?? null;
      }
      break;
    }
    case 'user': {
      const fields = changedFields(body);
      if (fields && request.method !== 'GET' && !note.detail?.fields) {
        detail.fields = fields.filter((f) => f !== 'password').concat(fields.includes('password') ? ['password (changed)'] : []);
        // The role asked for, also when refused (an attempt to become admin is what an auditor
        // looks for), as the database can store it: a NUL here withheld the 400 behind a 503.
        if (typeof body?.role === 'string') detail.role = clip(body.role);
        if (typeof body?.isActive === 'boolean') detail.isActive = body.isActive;
      }
      break;
    }
    case 'webhook':
    case 'audit':
    case 'model':
    case 'address':
      break;
  }
  if (spec.resource === 'patient' && (request.method === 'PATCH' || request.method === 'POST')) {
    const fields = changedFields(body);
    if (fields) detail.fields = fields;
  }
  // (A sign-in's query is the provider's code and state: nothing an auditor filters by.)
  if (request.method === 'GET' && spec.resource !== 'session' && request.query && Object.keys(request.query).length > 0) {
    // Which filters were used, not their values (a search term can be a patient's name).
    detail.query = Object.keys(request.query).slice(0, 20).map((k) => storable(k.slice(0, 64)));
  }
  return {
    actorId: actor?.id ?? null,
    actorRole: actor?.role ?? null,
    action: spec.action,
    resourceType: spec.resource,
    resourceId,
    patientIds: [...new Set(patientIds ?? [])],
    ip: request.ip,
    outcome: note.outcome ?? outcomeOf(statusCode),
    statusCode,
    detail: Object.keys(detail).length > 0 ? detail : null,
  };
}

/**
 * The issuing of signed links, as its own export event: which scans' files left as links, of
 * which kinds, to whom (the actor: a link is signed for the user who asked) and for how long.
 * Downloading through a link is recorded apart (file.download, report.download).
 */
async function linkIssueEvent(
  db: Db,
  issued: FastifyRequest['issuedLinks'],
  main: NewAuditRow,
  ttlSeconds: number,
): Promise<NewAuditRow | null> {
  if (!issued || issued.size === 0 || main.outcome !== 'success') return null;
  const scanIds = [...issued.keys()];
  const kinds = [...new Set([...issued.values()].flatMap((k) => [...k]))].sort();
  // A scan event (list, detail, upload, review) has already resolved the patients of the very
  // scans whose links it handed out: reuse them rather than query again on the hottest path.
  const sameScans = main.resourceType === 'scan' && (main.patientIds?.length ?? 0) > 0;
  return {
    actorId: main.actorId,
    actorRole: main.actorRole,
    action: 'link.issue',
    resourceType: 'scan',
    resourceId: scanIds.length === 1 ? scanIds[0]! : null,
    patientIds: sameScans ? main.patientIds : await patientsOfScans(db, scanIds),
    ip: main.ip,
    outcome: 'success',
    statusCode: main.statusCode,
    detail: { via: main.action, scans: scanIds.length, kinds, expiresInSeconds: ttlSeconds },
  };
}

/** Root-level hooks: every route whose config names an audit action is recorded. */
export function registerAuditHooks(app: FastifyInstance, deps: { db: Db; audit: AuditLog; config: { signedUrlTtlSeconds: number } }): void {
  app.decorateRequest('auditNote', null);
  app.decorateRequest('auditPayload', null);
  app.decorateRequest('issuedLinks', null);
  app.decorateRequest('auditWritten', false);
  app.decorateRequest('auditCommitted', null);
  app.addHook('preSerialization', async (request, _reply, payload) => {
    if (request.routeOptions.config?.audit) request.auditPayload = payload;
    return payload;
  });
  // onSend, not onResponse: the event is committed before the answer leaves. The hook runs
  // once per request (an error answer it provokes goes through onSend again).
  app.addHook('onSend', async (request, reply, payload) => {
    const spec = request.routeOptions.config?.audit;
    if (!spec || request.auditWritten) return payload;
    request.auditWritten = true;
    // Committed already with the request's own writes (auditInAdvance) for this very answer:
    // done, with no describing again (the upload's hot path). An answer other than the one
    // foreseen (a failure after the commit) is described and recorded as any other.
    if (request.auditCommitted?.[0]?.statusCode === reply.statusCode) return payload;
    try {
      const main = await describe(deps.db, spec, request, reply.statusCode);
      const links = await linkIssueEvent(deps.db, request.issuedLinks, main, deps.config.signedUrlTtlSeconds);
      await deps.audit.write(links ? [main, links] : [main]);
    } catch (err) {
      // Logged by kind and code only (platform/logging.ts). The answer is withheld. The database
      // out of reach is an outage, not a bug: a warning, without the statement.
      if (isDatabaseUnreachable(err)) {
        request.log.warn({ database: scrubError(err, { query: false }) }, 'an audit event could not be written, the database is not reachable: the answer is withheld');
        // An answer that says so already (a 503 of the error handler or an upload's) is kept.
        const outage = reply.statusCode === 503 && typeof payload === 'string' ? payload : JSON.stringify({ error: databaseUnreachable(request.method).message });
        return withhold(reply, payload, outage);
      }
      request.log.error({ err }, 'an audit event could not be written: the answer is withheld');
      return withhold(reply, payload, request.method === 'GET' || request.method === 'HEAD' ? WITHHELD : WITHHELD_CHANGE);
    }
    return payload;
  });
}

const WITHHELD = JSON.stringify({
  error: 'The request could not be recorded in the audit trail, so its answer was withheld: try again later',
});
/** A change is committed before its event is written: it may well be saved. */
const WITHHELD_CHANGE = JSON.stringify({
  error: 'The request could not be recorded in the audit trail, so its answer was withheld; a change it made may have been saved: check before sending it again, later',
});

/**
 * Replaces an answer that must not leave with a 503 {"error"}: a file stream is closed and
 * file headers removed. Done here rather than by throwing, which would hand an answer that
 * the error handler built already to Fastify's default handler (another error shape).
 */
function withhold(reply: FastifyReply, payload: unknown, answer: string): string {
  const stream = payload as { destroy?: () => void } | null;
  if (stream && typeof stream === 'object' && typeof stream.destroy === 'function') stream.destroy();
  reply.removeHeader('content-disposition');
  reply.code(503).header('content-type', 'application/json; charset=utf-8').header('retry-after', String(RETRY_AFTER_SECONDS.databaseOutage));
  return answer;
}

/**
 * A refused sign-in outside any audited route (HTTP Basic at /docs with API_DOCS=auth): recorded
 * like a failed password sign-in, naming the account tried when there is one. Nothing leaves on
 * a refusal, so an event that cannot be written is logged, not fatal.
 */
export async function auditRefusedSignIn(
  deps: { db: Db; audit: AuditLog },
  request: FastifyRequest,
  { email, statusCode, method }: { email: string; statusCode: number; method: string },
): Promise<void> {
  try {
    const target = email.length <= 254 && storable(email) === email ? await findUserByEmail(deps.db, email.trim()) : null;
    await deps.audit.write([
      {
        actorId: null,
        actorRole: null,
        action: 'auth.login',
        resourceType: 'session',
        resourceId: target?.id ?? null,
        patientIds: [],
        ip: request.ip,
        outcome: outcomeOf(statusCode),
        statusCode,
        detail: { method },
      },
    ]);
  } catch (err) {
    request.log.error({ err }, 'a refused sign-in could not be recorded in the audit trail');
  }
}

/** What a request's own writes commit of its audit trail (see auditInAdvance). */
export interface AdvanceAudit {
  /** The events, STATEMENT_PATIENT standing for the patient the write finds or creates. */
  rows: NewAuditRow[];
  /** The events for that patient, for a write that knows it (a transaction). */
  rowsFor(patientId: string): NewAuditRow[];
  /** To be called once they are committed: the hook then writes them no more. */
  committed(patientId: string): void;
}

const withPatient = (rows: NewAuditRow[], patientId: string): NewAuditRow[] =>
  rows.map((row) => ({ ...row, patientIds: row.patientIds?.map((id) => (id === STATEMENT_PATIENT ? patientId : id)) ?? [] }));

/**
 * The events the onSend hook would write for this request if it answered `statusCode` with
 * `answer`, having noted `note` and issued `links`: built by the hook's own code, for a write
 * that commits them with its own rows (an upload's one statement) instead of a second INSERT
 * after it. The hook takes them as committed and writes nothing more when the answer's status
 * is the one foreseen; a different answer (a failure after the commit) is recorded as any other.
 * Null for a route with no audit action.
 */
export async function auditInAdvance(
  deps: { db: Db; config: { signedUrlTtlSeconds: number } },
  request: FastifyRequest,
  { statusCode, answer, note, links }: { statusCode: number; answer: unknown; note: AuditNote; links: FastifyRequest['issuedLinks'] },
): Promise<AdvanceAudit | null> {
  const spec = request.routeOptions.config?.audit;
  if (!spec) return null;
  const main = await describe(deps.db, spec, request, statusCode, { note: { ...(request.auditNote ?? {}), ...note }, answer });
  const issued = await linkIssueEvent(deps.db, links, main, deps.config.signedUrlTtlSeconds);
  const rows = issued ? [main, issued] : [main];
  return {
    rows,
    rowsFor: (patientId) => withPatient(rows, patientId),
    committed(patientId) {
      request.auditCommitted = withPatient(rows, patientId);
    },
  };
}

/** For a handler: what the hook cannot see (a deleted record's patient, a link's user). */
export function noteAudit(request: FastifyRequest, note: AuditNote): void {
  request.auditNote = { ...(request.auditNote ?? {}), ...note };
}

/** For whoever signs a link: records that this request hands out a link to a scan's file. */
export function noteLinkIssued(request: FastifyRequest, scanId: string, kind: LinkKind): void {
  request.issuedLinks ??= new Map();
  let kinds = request.issuedLinks.get(scanId);
  if (!kinds) request.issuedLinks.set(scanId, (kinds = new Set()));
  kinds.add(kind);
}
