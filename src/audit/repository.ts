import { and, desc, eq, gte, inArray, lt, sql, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../platform/db/index.js';
import { auditEvents, scans } from '../platform/db/schema.js';

export type AuditRow = typeof auditEvents.$inferSelect;
export type NewAuditRow = typeof auditEvents.$inferInsert;

export async function insertAuditEvents(db: DbOrTx, rows: NewAuditRow[]): Promise<void> {
  if (rows.length > 0) await db.insert(auditEvents).values(rows);
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
