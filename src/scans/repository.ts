import { and, asc, desc, eq, gte, inArray, lt, sql, type SQL } from 'drizzle-orm';
import { patientVisibleTo, scanPatientColumns, type ScanPatient, type ScanRow, type ScanWithPatient, type Viewer } from '../access/index.js';
import type { DbOrTx } from '../platform/db/index.js';
import { analyses, annotations, patients, reports, scanReviews, scans, users } from '../platform/db/schema.js';

export type { ScanPatient, ScanRow, ScanWithPatient };
export type NewScanRow = typeof scans.$inferInsert;
export type AnalysisRow = typeof analyses.$inferSelect;

export interface LatestReview {
  id: string;
  scanId: string;
  analysisId: string | null;
  status: string;
  result: Record<string, unknown>;
  reviewedAt: Date;
  reviewer: { id: string; name: string; email: string } | null;
}

export interface ScanListFilter {
  page: number;
  limit: number;
  status?: ScanRow['status'];
  scanType?: NonNullable<ScanRow['scanType']>;
  /** The patient's `_id`, already resolved and checked. */
  patientRowId?: string;
  from?: Date;
  /** Exclusive upper bound. */
  until?: Date;
}

export async function listVisibleScans(
  db: DbOrTx,
  viewer: Viewer,
  filter: ScanListFilter,
): Promise<{ rows: ScanWithPatient[]; total: number }> {
  const conditions: (SQL | undefined)[] = [patientVisibleTo(viewer, scans.patientId)];
  if (filter.status) conditions.push(eq(scans.status, filter.status));
  if (filter.scanType) conditions.push(eq(scans.scanType, filter.scanType));
  if (filter.patientRowId) conditions.push(eq(scans.patientId, filter.patientRowId));
  if (filter.from) conditions.push(gte(scans.scanDate, filter.from));
  if (filter.until) conditions.push(lt(scans.scanDate, filter.until));
  const where = and(...conditions);
  const [count] = await db.select({ n: sql<number>`count(*)::int` }).from(scans).where(where);
  const rows = await db
    .select({ scan: scans, patient: scanPatientColumns })
    .from(scans)
    .innerJoin(patients, eq(patients.id, scans.patientId))
    .where(where)
    .orderBy(desc(scans.scanDate), desc(scans.id))
    .limit(filter.limit)
    .offset((filter.page - 1) * filter.limit);
  return { rows, total: count?.n ?? 0 };
}

export async function insertScan(db: DbOrTx, values: NewScanRow): Promise<ScanRow> {
  const [row] = await db.insert(scans).values(values).returning();
  return row!;
}

export async function updateScanRow(db: DbOrTx, id: string, values: Partial<NewScanRow>): Promise<ScanRow> {
  const [row] = await db
    .update(scans)
    .set({ ...values, updatedAt: new Date() })
    .where(eq(scans.id, id))
    .returning();
  return row!;
}

export async function deleteScanRow(db: DbOrTx, id: string): Promise<void> {
  await db.delete(scans).where(eq(scans.id, id));
}

/** The current analysis of each scan that has one, by scan id. */
export async function currentAnalyses(db: DbOrTx, scanRows: ScanRow[]): Promise<Map<string, AnalysisRow>> {
  const ids = scanRows.map((s) => s.currentAnalysisId).filter((id): id is string => id !== null);
  const out = new Map<string, AnalysisRow>();
  if (ids.length === 0) return out;
  const rows = await db.select().from(analyses).where(inArray(analyses.id, ids));
  for (const row of rows) out.set(row.scanId, row);
  return out;
}

/**
 * The latest review of each scan's current analysis, by scan id. A review judged one analysis:
 * after a re-analysis it stays in the table (who said what, when) but no longer overlays the
 * new model output.
 */
export async function latestReviews(db: DbOrTx, scanIds: string[]): Promise<Map<string, LatestReview>> {
  const out = new Map<string, LatestReview>();
  if (scanIds.length === 0) return out;
  const rows = await db
    .selectDistinctOn([scanReviews.scanId], {
      id: scanReviews.id,
      scanId: scanReviews.scanId,
      analysisId: scanReviews.analysisId,
      status: scanReviews.status,
      result: scanReviews.result,
      reviewedAt: scanReviews.reviewedAt,
      reviewerId: users.id,
      reviewerName: users.name,
      reviewerEmail: users.email,
    })
    .from(scanReviews)
    .innerJoin(scans, eq(scans.id, scanReviews.scanId))
    .leftJoin(users, eq(users.id, scanReviews.reviewedBy))
    .where(
      and(
        inArray(scanReviews.scanId, scanIds),
        sql`${scanReviews.analysisId} is not distinct from ${scans.currentAnalysisId}`,
      ),
    )
    .orderBy(scanReviews.scanId, desc(scanReviews.reviewedAt), desc(scanReviews.id));
  for (const r of rows) {
    out.set(r.scanId, {
      id: r.id,
      scanId: r.scanId,
      analysisId: r.analysisId,
      status: r.status,
      result: r.result,
      reviewedAt: r.reviewedAt,
      reviewer: r.reviewerId ? { id: r.reviewerId, name: r.reviewerName ?? '', email: r.reviewerEmail ?? '' } : null,
    });
  }
  return out;
}

/** Every analysis of a scan, oldest first: the scan's analysis history. */
export async function analysesOf(db: DbOrTx, scanId: string): Promise<AnalysisRow[]> {
  return db.select().from(analyses).where(eq(analyses.scanId, scanId)).orderBy(asc(analyses.createdAt), asc(analyses.id));
}

export async function insertReview(db: DbOrTx, values: typeof scanReviews.$inferInsert): Promise<void> {
  await db.insert(scanReviews).values(values);
}

export async function annotationsOf(db: DbOrTx, scanId: string) {
  return db
    .select({
      id: annotations.id,
      x: annotations.x,
      y: annotations.y,
      text: annotations.text,
      createdAt: annotations.createdAt,
      authorId: users.id,
      authorName: users.name,
    })
    .from(annotations)
    .leftJoin(users, eq(users.id, annotations.createdBy))
    .where(eq(annotations.scanId, scanId))
    .orderBy(asc(annotations.createdAt), asc(annotations.id));
}

export type AnnotationRow = Awaited<ReturnType<typeof annotationsOf>>[number];

export async function insertAnnotation(db: DbOrTx, values: typeof annotations.$inferInsert): Promise<void> {
  await db.insert(annotations).values(values);
}

export async function insertReport(db: DbOrTx, values: typeof reports.$inferInsert): Promise<void> {
  await db.insert(reports).values(values);
}

export async function findReport(db: DbOrTx, scanId: string, reportId: string) {
  const [row] = await db
    .select()
    .from(reports)
    .where(and(eq(reports.id, reportId), eq(reports.scanId, scanId)));
  return row ?? null;
}

export async function findUserRef(db: DbOrTx, id: string) {
  const [row] = await db.select({ id: users.id, name: users.name, email: users.email }).from(users).where(eq(users.id, id));
  return row ?? null;
}
