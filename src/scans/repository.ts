import { and, asc, desc, eq, gte, inArray, lt, sql, type SQL } from 'drizzle-orm';
import { patientVisibleTo, scanPatientColumns, type ScanPatient, type ScanRow, type ScanWithPatient, type Viewer } from '../access/index.js';
import type { DbOrTx } from '../platform/db/index.js';
import type { NewAnalysisRow } from '../analysis/types.js';
import { analyses, annotations, patientDoctors, patients, reports, scanReviews, scans, users } from '../platform/db/schema.js';
import { createTotalsCache, LARGE, type TotalsCache } from './totals.js';

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

/** Counts of long lists, per process and database (see totals.ts). */
const totalsByDb = new WeakMap<object, TotalsCache>();

export async function listVisibleScans(
  db: DbOrTx,
  viewer: Viewer,
  filter: ScanListFilter,
): Promise<{ rows: ScanWithPatient[]; total: number }> {
  const filters: (SQL | undefined)[] = [];
  if (filter.status) filters.push(eq(scans.status, filter.status));
  if (filter.scanType) filters.push(eq(scans.scanType, filter.scanType));
  if (filter.patientRowId) filters.push(eq(scans.patientId, filter.patientRowId));
  if (filter.from) filters.push(gte(scans.scanDate, filter.from));
  if (filter.until) filters.push(lt(scans.scanDate, filter.until));
  const where = and(patientVisibleTo(viewer, scans.patientId), ...filters);
  const offset = (filter.page - 1) * filter.limit;

  const key = JSON.stringify([viewer.role === 'admin' ? 'all' : viewer.id, filter.status, filter.scanType, filter.patientRowId, filter.from, filter.until]);
  const countRows = async (bound: number | null) => {
    const inner = db.select({ one: sql`1` }).from(scans).where(where);
    const rows = await db
      .select({ n: sql<number>`count(*)::int` })
      .from((bound === null ? inner : inner.limit(bound)).as('matching'));
    return rows[0]?.n ?? 0;
  };
  let totals = totalsByDb.get(db);
  if (!totals) totalsByDb.set(db, (totals = createTotalsCache()));
  const totalPromise = totals.total(key, () => countRows(LARGE + 1), () => countRows(null));

  let page: Promise<ScanWithPatient[]>;
  if (viewer.role !== 'admin' && !filter.patientRowId) {
    // A doctor's page, patient by patient: the newest `offset + limit` scans of each assigned
    // patient (scans_patient_date_idx), merged. Scanning the whole table by date and probing
    // each scan's assignment instead reads thousands of rows when a doctor has 0.2% of them.
    // The rule is access/'s patientVisibleTo (a doctor sees the assigned patients), walked
    // from the assignments instead of checked per scan.
    const k = offset + filter.limit;
    const per = db
      .select({ id: scans.id, scanDate: scans.scanDate })
      .from(scans)
      .where(and(sql`${scans.patientId} = ${patientDoctors.patientId}`, ...filters))
      .orderBy(desc(scans.scanDate), desc(scans.id))
      .limit(k)
      .as('per_patient');
    const ids = db
      .select({ id: per.id })
      .from(patientDoctors)
      .innerJoinLateral(per, sql`true`)
      .where(eq(patientDoctors.doctorId, viewer.id))
      .orderBy(desc(per.scanDate), desc(per.id))
      .limit(filter.limit)
      .offset(offset);
    page = db
      .select({ scan: scans, patient: scanPatientColumns })
      .from(scans)
      .innerJoin(patients, eq(patients.id, scans.patientId))
      .where(inArray(scans.id, ids))
      .orderBy(desc(scans.scanDate), desc(scans.id));
  } else {
    page = db
      .select({ scan: scans, patient: scanPatientColumns })
      .from(scans)
      .innerJoin(patients, eq(patients.id, scans.patientId))
      .where(where)
      .orderBy(desc(scans.scanDate), desc(scans.id))
      .limit(filter.limit)
      .offset(offset);
  }
  const [rows, total] = await Promise.all([page, totalPromise]);
  return { rows, total };
}

/**
 * A new scan with its first analysis row, in one statement (one round trip of an upload): the
 * analysis is inserted by a data-modifying CTE, its foreign key checked at the statement's end.
 */
export async function insertScanWithAnalysis(tx: DbOrTx, values: NewScanRow, analysis: NewAnalysisRow): Promise<ScanRow> {
  const queued = tx.$with('queued_analysis').as(tx.insert(analyses).values(analysis).returning({ id: analyses.id }));
  const [row] = await tx.with(queued).insert(scans).values(values).returning();
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

const reviewColumns = {
  id: scanReviews.id,
  scanId: scanReviews.scanId,
  analysisId: scanReviews.analysisId,
  status: scanReviews.status,
  result: scanReviews.result,
  reviewedAt: scanReviews.reviewedAt,
  reviewerId: users.id,
  reviewerName: users.name,
  reviewerEmail: users.email,
};

function toReview(r: {
  id: string;
  scanId: string;
  analysisId: string | null;
  status: string;
  result: Record<string, unknown>;
  reviewedAt: Date;
  reviewerId: string | null;
  reviewerName: string | null;
  reviewerEmail: string | null;
}): LatestReview {
  return {
    id: r.id,
    scanId: r.scanId,
    analysisId: r.analysisId,
    status: r.status,
    result: r.result,
    reviewedAt: r.reviewedAt,
    reviewer: r.reviewerId ? { id: r.reviewerId, name: r.reviewerName ?? '', email: r.reviewerEmail ?? '' } : null,
  };
}

/**
 * The standing review of each scan (its latest), by scan id. A physician's review is a clinical
 * record: it stands after a re-analysis, beside the newer model output, until a physician
 * reviews again.
 */
export async function latestReviews(db: DbOrTx, scanIds: string[]): Promise<Map<string, LatestReview>> {
  const out = new Map<string, LatestReview>();
  if (scanIds.length === 0) return out;
  const rows = await db
    .selectDistinctOn([scanReviews.scanId], reviewColumns)
    .from(scanReviews)
    .leftJoin(users, eq(users.id, scanReviews.reviewedBy))
    .where(inArray(scanReviews.scanId, scanIds))
    .orderBy(scanReviews.scanId, desc(scanReviews.reviewedAt), desc(scanReviews.id));
  for (const r of rows) out.set(r.scanId, toReview(r));
  return out;
}

/** Every review of a scan, oldest first: who said what, when, about which analysis. */
export async function reviewsOf(db: DbOrTx, scanId: string): Promise<LatestReview[]> {
  const rows = await db
    .select(reviewColumns)
    .from(scanReviews)
    .leftJoin(users, eq(users.id, scanReviews.reviewedBy))
    .where(eq(scanReviews.scanId, scanId))
    .orderBy(asc(scanReviews.reviewedAt), asc(scanReviews.id));
  return rows.map(toReview);
}

/** Analyses by id (the current ones and those the standing reviews judged). */
export async function analysesById(db: DbOrTx, ids: (string | null | undefined)[]): Promise<Map<string, AnalysisRow>> {
  const wanted = [...new Set(ids.filter((id): id is string => typeof id === 'string'))];
  const out = new Map<string, AnalysisRow>();
  if (wanted.length === 0) return out;
  for (const row of await db.select().from(analyses).where(inArray(analyses.id, wanted))) out.set(row.id, row);
  return out;
}

/** Moves the scan's updatedAt: a review or an annotation changed what the scan shows. */
export async function touchScan(db: DbOrTx, id: string): Promise<ScanRow> {
  return updateScanRow(db, id, {});
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

/** The id of the scan's latest report, or null when none was generated. */
export async function latestReportId(db: DbOrTx, scanId: string): Promise<string | null> {
  const [row] = await db
    .select({ id: reports.id })
    .from(reports)
    .where(eq(reports.scanId, scanId))
    .orderBy(desc(reports.createdAt), desc(reports.id))
    .limit(1);
  return row?.id ?? null;
}

export async function findUserRef(db: DbOrTx, id: string) {
  const [row] = await db.select({ id: users.id, name: users.name, email: users.email }).from(users).where(eq(users.id, id));
  return row ?? null;
}
