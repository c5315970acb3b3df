import { and, asc, avg, desc, eq, inArray, lt, lte, not, sql, type Query, type SQL } from 'drizzle-orm';
import { buildQuery, builtOncePerDb, executeBuilt, namedByText, type DbOrTx } from '../platform/db/index.js';
import { analyses, scanReviews, scans } from '../platform/db/schema.js';

export type AnalysisRow = typeof analyses.$inferSelect;

/** Locks the scan's row until the transaction ends, so concurrent requests for it queue up. */
export async function lockScan(tx: DbOrTx, scanId: string) {
  const [row] = await tx.select({ id: scans.id, patientId: scans.patientId }).from(scans).where(eq(scans.id, scanId)).for('update');
  return row ?? null;
}

export async function pendingAnalysisOf(tx: DbOrTx, scanId: string): Promise<AnalysisRow | null> {
  const [row] = await tx
    .select()
    .from(analyses)
    .where(and(eq(analyses.scanId, scanId), inArray(analyses.status, ['queued', 'active'])))
    .orderBy(desc(analyses.createdAt))
    .limit(1);
  return row ?? null;
}

export async function latestAnalysisOf(db: DbOrTx, scanId: string): Promise<AnalysisRow | null> {
  const [row] = await db
    .select()
    .from(analyses)
    .where(eq(analyses.scanId, scanId))
    .orderBy(desc(analyses.createdAt))
    .limit(1);
  return row ?? null;
}

export async function insertAnalysis(tx: DbOrTx, values: typeof analyses.$inferInsert): Promise<AnalysisRow> {
  const [row] = await tx.insert(analyses).values(values).returning();
  return row!;
}

const UNFINISHED = ['queued', 'active'] as const;

/** claimAnalysis's statement, built once and named: every try of every analysis runs it. */
const claimStatement = builtOncePerDb('analysis_claim', (db) => {
  const progress = sql`${sql.placeholder('progress')}::integer`;
  return db
    .update(analyses)
    .set({
      status: 'active',
      attempt: sql`${sql.placeholder('attempt')}::integer`,
      startedAt: sql`${sql.placeholder('startedAt')}::timestamptz`,
      stage: sql`case when ${analyses.progress} < ${progress} then 'decode' else ${analyses.stage} end`,
      progress: sql`greatest(${analyses.progress}, ${progress})`,
    })
    .from(scans)
    .where(and(sql`${analyses.id} = ${sql.placeholder('id')}`, eq(scans.id, analyses.scanId), inArray(analyses.status, [...UNFINISHED])))
    .returning({
      scanType: analyses.scanType,
      patientId: scans.patientId,
      id: scans.id,
      originalKey: scans.originalKey,
      imageKey: scans.imageKey,
      thumbnailKey: scans.thumbnailKey,
      dicom: scans.dicom,
    });
});

/**
 * Takes an unfinished analysis for one try of its job: marks it active, records the try and
 * shows its first stage (`decode` at `progress`), and reads what the analysis needs of its
 * scan, all in one statement. Progress never moves back: a retry of an analysis that had got
 * further keeps its stage until it passes it. Returns null when it finished already (a retry
 * of a job whose first run got through) or is gone with its scan.
 */
export async function claimAnalysis(db: DbOrTx, id: string, attempt: number, progress: number) {
  const [row] = await claimStatement(db).execute({ id, attempt, progress, startedAt: new Date().toISOString() });
  return row ?? null;
}

/** Progress of the try that owns the analysis; it never moves backwards, even across retries. */
export async function reportProgress(db: DbOrTx, id: string, attempt: number, stage: string, progress: number) {
  await db
    .update(analyses)
    .set({ stage, progress })
    .where(and(eq(analyses.id, id), eq(analyses.status, 'active'), eq(analyses.attempt, attempt), lte(analyses.progress, progress)));
}

/** SQL with placeholders only and the values that fill them: built once per statement form, run with new values. */
interface Prepared<Build> {
  statement: Build;
  values: Record<string, unknown>;
}

export interface AnalysisEnd {
  analysisId: string;
  /** The try that must still own the analysis; any try when absent (the reconciler). */
  attempt?: number;
  analysis: Partial<typeof analyses.$inferInsert>;
  scanId: string;
  scan: Partial<typeof scans.$inferInsert>;
  /** A condition under which nothing is written (`heldBack` is then its value). */
  unless?: Prepared<() => SQL<boolean>>;
  /** The job try's completion (platform/queue JobCompletion.prepared), written only if the analysis is ended here. */
  completeJob?: Prepared<(when: SQL<boolean>) => SQL>;
}

interface EndParts {
  analysisId: unknown;
  attempt: unknown;
  analysis: Record<string, unknown>;
  scanId: unknown;
  scan: Record<string, unknown>;
  unless: SQL<boolean>;
  completeJob?: (when: SQL<boolean>) => SQL;
}

/** The end statement of `parts`, its values placeholders (see endAnalysis). */
function endStatement(db: DbOrTx, parts: EndParts): SQL {
  const { unless } = parts;
  const finished = db
    .update(analyses)
    .set(parts.analysis as never)
    .where(
      and(
        sql`${analyses.id} = ${parts.analysisId}`,
        inArray(analyses.status, [...UNFINISHED]),
        parts.attempt === undefined ? undefined : sql`${analyses.attempt} = ${parts.attempt}`,
        not(unless),
      ),
    )
    .returning({ id: analyses.id });
  const scan = db
    .update(scans)
    .set(parts.scan)
    .where(and(sql`${scans.id} = ${parts.scanId}`, sql`exists (select 1 from finished)`));
  const job = parts.completeJob ? sql`, job as (${parts.completeJob(sql<boolean>`exists (select 1 from finished)`)})` : sql``;
  const jobCompleted = parts.completeJob ? sql`exists (select 1 from job)` : sql`false`;
  // Data-modifying CTEs all run, on one snapshot, whether or not the outer query reads them.
  return sql`with finished as (${finished.getSQL()}), scan as (${scan.getSQL()})${job}
        select exists (select 1 from finished) as "finished", ${unless} as "heldBack", ${jobCompleted} as "jobCompleted"`;
}

/**
 * The end statement's forms built once (which columns an outcome sets and which of them are
 * null, with or without a try, a job, a condition): building it took ~0.33 ms of the worker's
 * loop at every analysis, filling it 0.013 (docs/benchmarks/pipeline.md, 2026-12-06 23:35). Bounded, as namedByText.
 */
const endForms = new Map<string, Query>();
const MAX_END_FORMS = 32;

/**
 * A number per statement builder (`unless`, `completeJob`), part of a form's key: two builders
 * with other text (a test's completion beside the queue's) must not share a built form, whose
 * placeholders would then be the other's.
 */
const builderIds = new WeakMap<object, number>();
let builders = 0;
function builderId(build: object | undefined): string {
  if (!build) return '-';
  let id = builderIds.get(build);
  if (id === undefined) builderIds.set(build, (id = ++builders));
  return String(id);
}

/** A set's columns as placeholders `prefix` + column; a null stays a null in the text (a jsonb column would encode a placeholder's null as JSON). */
function placeholdersOf(prefix: string, values: Record<string, unknown>): { set: Record<string, unknown>; values: Record<string, unknown>; form: string } {
  const set: Record<string, unknown> = {};
  const filled: Record<string, unknown> = {};
  const form: string[] = [];
  for (const [column, value] of Object.entries(values)) {
    if (value === undefined) continue;
    form.push(value === null ? `${column}=null` : column);
    set[column] = value === null ? null : sql.placeholder(prefix + column);
    if (value !== null) filled[prefix + column] = value;
  }
  return { set, values: filled, form: form.sort().join(',') };
}

/**
 * Ends an analysis and sets its scan in one statement: the analysis row if it is still
 * unfinished (and, with `attempt`, still owned by that try), and the scan and the job (with
 * `completeJob`) only if the analysis was. `finished`: this call ended it, so its event is
 * published exactly once; `heldBack`: `unless` held, and nothing was written; `jobCompleted`:
 * the job was completed in the same commit. The statement of each form is built once and run
 * with this call's values.
 */
const endStatementName = namedByText('analysis_end');

export async function endAnalysis(db: DbOrTx, end: AnalysisEnd): Promise<{ finished: boolean; heldBack: boolean; jobCompleted: boolean }> {
  const { unless, completeJob } = end;
  const analysis = placeholdersOf('a_', end.analysis);
  const scan = placeholdersOf('s_', { ...end.scan, updatedAt: new Date() });
  const form = [analysis.form, scan.form, end.attempt !== undefined, builderId(unless?.statement), builderId(completeJob?.statement)].join('|');
  let query = endForms.get(form);
  if (!query) {
    query = buildQuery(
      endStatement(db, {
        analysisId: sql.placeholder('analysisId'),
        attempt: end.attempt === undefined ? undefined : sql.placeholder('attempt'),
        analysis: analysis.set,
        scanId: sql.placeholder('scanId'),
        scan: scan.set,
        unless: unless ? unless.statement() : sql<boolean>`false`,
        ...(completeJob ? { completeJob: completeJob.statement } : {}),
      }),
    );
    if (endForms.size < MAX_END_FORMS) endForms.set(form, query);
  }
  const rows = await executeBuilt<{ finished: boolean; heldBack: boolean; jobCompleted: boolean }>(db, endStatementName, query, {
    analysisId: end.analysisId,
    ...(end.attempt === undefined ? {} : { attempt: end.attempt }),
    scanId: end.scanId,
    ...analysis.values,
    ...scan.values,
    ...unless?.values,
    ...completeJob?.values,
  });
  return { finished: rows[0]?.finished === true, heldBack: rows[0]?.heldBack === true, jobCompleted: rows[0]?.jobCompleted === true };
}

export async function updateScan(db: DbOrTx, id: string, values: Partial<typeof scans.$inferInsert>) {
  await db
    .update(scans)
    .set({ ...values, updatedAt: new Date() })
    .where(eq(scans.id, id));
}

export async function findScanForAnalysis(db: DbOrTx, id: string) {
  const [row] = await db
    .select({
      id: scans.id,
      patientId: scans.patientId,
      imageKey: scans.imageKey,
      status: scans.status,
      width: scans.width,
      height: scans.height,
      dicom: scans.dicom,
    })
    .from(scans)
    .where(eq(scans.id, id));
  return row ?? null;
}

/** Whether a physician has reviewed the scan. */
export async function hasReview(db: DbOrTx, scanId: string): Promise<boolean> {
  const [row] = await db.select({ id: scanReviews.id }).from(scanReviews).where(eq(scanReviews.scanId, scanId)).limit(1);
  return row !== undefined;
}

/** Analyses waiting ahead of this one (queued earlier), for the completion estimate. */
export async function countQueuedBefore(db: DbOrTx, createdAt: Date): Promise<number> {
  const [row] = await db
    .select({ n: sql<number>`count(*)::int` })
    .from(analyses)
    .where(and(inArray(analyses.status, ['queued', 'active']), lt(analyses.createdAt, createdAt)));
  return row?.n ?? 0;
}

/** Mean duration of the last 50 finished analyses, in ms. */
export async function recentAverageDurationMs(db: DbOrTx): Promise<number | null> {
  const recent = db
    .select({ d: analyses.durationMs })
    .from(analyses)
    .where(and(eq(analyses.status, 'completed'), sql`${analyses.durationMs} is not null`))
    .orderBy(desc(analyses.completedAt))
    .limit(50)
    .as('recent');
  const [row] = await db.select({ avg: avg(recent.d) }).from(recent);
  return row?.avg ? Number(row.avg) : null;
}

/**
 * Seconds between consecutive completions over the last 20 analyses finished in the past ten
 * minutes: the whole deployment's pace, however many workers there are. Null when too few.
 */
export async function recentCompletionIntervalMs(db: DbOrTx): Promise<number | null> {
  const rows = await db
    .select({ at: analyses.completedAt })
    .from(analyses)
    .where(and(eq(analyses.status, 'completed'), sql`${analyses.completedAt} > now() - interval '10 minutes'`))
    .orderBy(desc(analyses.completedAt))
    .limit(20);
  if (rows.length < 5) return null;
  const newest = rows[0]!.at!.getTime();
  const oldest = rows.at(-1)!.at!.getTime();
  return (newest - oldest) / (rows.length - 1);
}

/** Unfinished analyses, oldest first: the reconciler checks their jobs are still alive. */
export async function unfinishedAnalyses(db: DbOrTx, olderThan: Date): Promise<AnalysisRow[]> {
  return db
    .select()
    .from(analyses)
    .where(and(inArray(analyses.status, ['queued', 'active']), lt(analyses.createdAt, olderThan)))
    .orderBy(asc(analyses.createdAt))
    .limit(200);
}

