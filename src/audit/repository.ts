import { and, desc, eq, gte, inArray, lt, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../platform/db/index.js';
import { markAppendOnly } from '../platform/db/write-generation.js';
import { auditEvents, scans } from '../platform/db/schema.js';

export type AuditRow = typeof auditEvents.$inferSelect;
export type NewAuditRow = typeof auditEvents.$inferInsert;

/**
 * Any number of audit rows in one statement of fixed text, the rows as one JSON parameter:
 * every request writes audit rows, and Drizzle built a multi-row INSERT for each group anew
 * (one of the largest shares of a list request's and an upload's CPU). One text also means one
 * plan, and on PGlite one named statement instead of one per group size.
 */
const INSERT_AUDIT_ROWS_HEAD = `insert into "audit_events" ("at", "actor_id", "actor_role", "action", "resource_type", "resource_id", "patient_ids", "ip", "outcome", "status_code", "detail")
  select coalesce((r->>'at')::timestamptz, now()), (r->>'actorId')::uuid, r->>'actorRole', r->>'action', r->>'resourceType', r->>'resourceId',
    array(select jsonb_array_elements_text(coalesce(r->'patientIds', '[]'::jsonb)))::uuid[], r->>'ip', r->>'outcome', (r->>'statusCode')::int,
    nullif(r->'detail', 'null'::jsonb)
  from jsonb_array_elements(`;
const INSERT_AUDIT_ROWS_TAIL = '::jsonb) as r';
// Append-only rows the cached pages never read: PGlite's write generation need not move for them.
markAppendOnly(`${INSERT_AUDIT_ROWS_HEAD}$1${INSERT_AUDIT_ROWS_TAIL}`);

/**
 * Stands, in the patientIds of events written by a statement (auditRowsInsertSql), for the
 * patient that statement finds or creates: an upload's events name a patient not known before.
 */
export const STATEMENT_PATIENT = '00000000-0000-4000-8000-000000000000';

/** The columns of an audit row `r` (jsonb), STATEMENT_PATIENT in its patientIds as `patientId`. */
const auditRowColumns = (patientId: SQL) => sql`coalesce((r->>'at')::timestamptz, now()), (r->>'actorId')::uuid, r->>'actorRole', r->>'action', r->>'resourceType', r->>'resourceId',
      array(select case when e = ${sql.raw(`'${STATEMENT_PATIENT}'`)} then ${patientId} else e::uuid end
              from jsonb_array_elements_text(coalesce(r->'patientIds', '[]'::jsonb)) with ordinality as p(e, n) order by n),
      r->>'ip', r->>'outcome', (r->>'statusCode')::int, nullif(r->'detail', 'null'::jsonb)`;
const INSERT_AUDIT_INTO = sql.raw(
  `insert into "audit_events" ("at", "actor_id", "actor_role", "action", "resource_type", "resource_id", "patient_ids", "ip", "outcome", "status_code", "detail")`,
);

/**
 * The INSERT of insertAuditEvents for a data-modifying CTE of a statement that commits the
 * events with its own rows (an upload: one statement instead of a second INSERT after it).
 * `rows` is a JSON array as insertAuditEvents sends; STATEMENT_PATIENT in a row's patientIds
 * becomes `patientId`. Nothing is written when `when` is false.
 */
export function auditRowsInsertSql(rows: SQL, patientId: SQL, when: SQL): SQL {
  return sql`${INSERT_AUDIT_INTO}
    select ${auditRowColumns(patientId)}
    from jsonb_array_elements(${rows}::jsonb) as r
    where ${when}`;
}

/**
 * auditRowsInsertSql for a statement that writes several requests' rows at once (a group of
 * uploads): each row of `source` has its events as the jsonb array `rows` and its patient as
 * `patientId`, both SQL over that row.
 */
export function auditRowsOfEachInsertSql(source: SQL, rows: SQL, patientId: SQL): SQL {
  return sql`${INSERT_AUDIT_INTO}
    select ${auditRowColumns(patientId)}
    from ${source} cross join lateral jsonb_array_elements(${rows}) as r`;
}

export async function insertAuditEvents(db: DbOrTx, rows: NewAuditRow[]): Promise<void> {
  if (rows.length === 0) return;
  await db.execute(sql`${sql.raw(INSERT_AUDIT_ROWS_HEAD)}${JSON.stringify(rows)}${sql.raw(INSERT_AUDIT_ROWS_TAIL)}`);
}

export interface AuditFilter {
  actorId?: string;
  patientRowId?: string;
  action?: string;
  resourceType?: string;
  resourceId?: string;
  outcome?: AuditRow['outcome'];
  from?: Date;
  until?: Date;
  page: number;
  limit: number;
}

export async function listAuditEvents(db: DbOrTx, f: AuditFilter): Promise<{ rows: AuditRow[]; total: number }> {
  const conditions: (SQL | undefined)[] = [
    f.actorId ? eq(auditEvents.actorId, f.actorId) : undefined,
    f.patientRowId ? sql`${auditEvents.patientIds} @> array[${f.patientRowId}]::uuid[]` : undefined,
    f.action ? eq(auditEvents.action, f.action) : undefined,
    f.resourceType ? eq(auditEvents.resourceType, f.resourceType) : undefined,
    f.resourceId ? eq(auditEvents.resourceId, f.resourceId) : undefined,
    f.outcome ? eq(auditEvents.outcome, f.outcome) : undefined,
    f.from ? gte(auditEvents.at, f.from) : undefined,
    f.until ? lt(auditEvents.at, f.until) : undefined,
  ];
  const where = and(...conditions);
  const [count] = await db.select({ n: sql<number>`count(*)::int` }).from(auditEvents).where(where);
  const rows = await db
    .select()
    .from(auditEvents)
    .where(where)
    .orderBy(desc(auditEvents.at), desc(auditEvents.id))
    .limit(f.limit)
    .offset((f.page - 1) * f.limit);
  return { rows, total: count?.n ?? 0 };
}

/** The patients of the given scans (for events about scans). */
export async function patientsOfScans(db: DbOrTx, scanIds: string[]): Promise<string[]> {
  if (scanIds.length === 0) return [];
  const rows = await db
    .selectDistinct({ patientId: scans.patientId })
    .from(scans)
    .where(inArray(scans.id, scanIds));
  return rows.map((r) => r.patientId);
}
