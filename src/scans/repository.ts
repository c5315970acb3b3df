import { randomUUID } from 'node:crypto';
import { and, asc, desc, eq, fillPlaceholders, getTableColumns, inArray, sql, type SQL, type SQLWrapper, TransactionRollbackError } from 'drizzle-orm';
import { alias, PgDialect, type PgColumn, type PgTable } from 'drizzle-orm/pg-core';
import { findVisiblePatient, patientVisibleTo, type ScanPatient, type ScanRow, type Viewer } from '../access/index.js';
import { builtOncePerDb, preparedPerDb, type Db, type DbOrTx } from '../platform/db/index.js';
import { insertJobsSql, notifyJobsSql, type JobRecord } from '../platform/queue/index.js';
import { createReadCache } from '../platform/db/read-cache.js';
import type { NewAnalysisRow } from '../analysis/types.js';
import type { ListedScan, ShownAnalysis } from './view.js';
import { analyses, annotations, patients, reports, scanAccess, scanOriginals, scanReviews, scans, users, type HeatmapMap } from '../platform/db/schema.js';
import { createTotalsCache, LARGE, type TotalsCache } from './totals.js';
import { heatmapKey, type ScanFiles } from './stored-files.js';
import { auditRowsInsertSql, auditRowsOfEachInsertSql, type NewAuditRow } from '../audit/repository.js';

export type { ScanPatient, ScanRow };
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

/** A scan of a list page with what it shows: the current analysis and the standing review. */
export interface ScanListRow {
  scan: ListedScan;
  patient: Pick<ScanPatient, 'id' | 'patientId' | 'name'>;
  analysis: ShownAnalysis | null;
  review: LatestReview | null;
  /** The analysis the standing review judged. */
  reviewedAnalysis: ShownAnalysis | null;
}

/** Counts of long lists, per process and database (see totals.ts). */
const totalsByDb = new WeakMap<object, TotalsCache>();

const currentAnalysis = alias(analyses, 'current_analysis');
const reviewedAnalysis = alias(analyses, 'reviewed_analysis');
const reviewer = alias(users, 'reviewer');

/**
 * The columns a list page shows (view.ts's scanView), not whole rows: a page of whole scans and
 * two whole analyses per scan was mostly columns no one reads, each mapped by Drizzle.
 */
const listedScanColumns = {
  id: scans.id,
  scanDate: scans.scanDate,
  scanType: scans.scanType,
  imageKey: scans.imageKey,
  thumbnailKey: scans.thumbnailKey,
  status: scans.status,
  currentAnalysisId: scans.currentAnalysisId,
  failureReason: scans.failureReason,
  createdAt: scans.createdAt,
};
const shownAnalysisColumns = (a: typeof currentAnalysis | typeof reviewedAnalysis) => ({
  scanId: a.scanId,
  result: a.result,
  modelId: a.modelId,
  modelVersion: a.modelVersion,
  heatmapKey: a.heatmapKey,
  hotRegion: a.hotRegion,
  refusalReason: a.refusalReason,
});

/** Which placeholders a list statement has: one prepared statement per combination. */
type ListShape = Pick<ScanListFilter, 'status' | 'scanType' | 'patientRowId' | 'from' | 'until'> & { admin: boolean };

const p = {
  viewerId: sql.placeholder('viewerId'),
  status: sql.placeholder('status'),
  scanType: sql.placeholder('scanType'),
  patientRowId: sql.placeholder('patientRowId'),
  from: sql.placeholder('from'),
  until: sql.placeholder('until'),
  limit: sql.placeholder('limit'),
  offset: sql.placeholder('offset'),
  perPatient: sql.placeholder('perPatient'),
  bound: sql.placeholder('bound'),
};

function listFilters(shape: ListShape): SQL[] {
  const filters: SQL[] = [];
  if (shape.status) filters.push(sql`${scans.status} = ${p.status}`);
  if (shape.scanType) filters.push(sql`${scans.scanType} = ${p.scanType}`);
  if (shape.patientRowId) filters.push(sql`${scans.patientId} = ${p.patientRowId}`);
  if (shape.from) filters.push(sql`${scans.scanDate} >= ${p.from}`);
  if (shape.until) filters.push(sql`${scans.scanDate} < ${p.until}`);
  return filters;
}

/**
 * The statements of one list shape (role and filters present), built and prepared once per
 * process: building a query with Drizzle cost more CPU than running it, and a named statement
 * is parsed and planned once per connection. A page is one statement: the page's scans, each
 * with its patient, current analysis and standing review joined (LATERAL), instead of three.
 */
function listStatements(db: DbOrTx, shape: ListShape) {
  const filters = listFilters(shape);
  const where = and(patientVisibleTo({ role: shape.admin ? 'admin' : 'doctor', id: p.viewerId }, scans.patientId), ...filters);
  const name = `scans_list_${shape.admin ? 'a' : 'd'}${['status', 'scanType', 'patientRowId', 'from', 'until'].map((k) => (shape[k as keyof ListShape] ? '1' : '0')).join('')}`;

  const matching = (bounded: boolean) => {
    const inner = db.select({ one: sql`1` }).from(scans).where(where);
    return db.select({ n: sql<number>`count(*)::int` }).from((bounded ? inner.limit(p.bound) : inner).as('matching'));
  };

  let ids;
  let counted = matching;
  if (!shape.admin && !shape.patientRowId) {
    // A doctor's page walks scan_access (one row per scan and assigned doctor, kept by
    // triggers: migrations 0007, 0009) by (doctor, date), or by (doctor, status or type, date)
    // when filtered: ten index entries for a page, however many patients or scans the doctor
    // has, instead of the newest scans of each patient merged or each scan probed for its
    // status. The page below still checks access/'s rule and the filters on its rows.
    const byDoctor = (select: Record<string, SQL | typeof scanAccess.scanId>) =>
      db
        .select(select)
        .from(scanAccess)
        .where(
          and(
            sql`${scanAccess.doctorId} = ${p.viewerId}`,
            shape.status ? sql`${scanAccess.status} = ${p.status}` : undefined,
            shape.scanType ? sql`${scanAccess.scanType} = ${p.scanType}` : undefined,
            shape.from ? sql`${scanAccess.scanDate} >= ${p.from}` : undefined,
            shape.until ? sql`${scanAccess.scanDate} < ${p.until}` : undefined,
          ),
        );
    ids = byDoctor({ id: scanAccess.scanId }).orderBy(desc(scanAccess.scanDate), desc(scanAccess.scanId)).limit(p.limit).offset(p.offset);
    counted = (bounded: boolean) => {
      const inner = byDoctor({ one: sql`1` });
      return db.select({ n: sql<number>`count(*)::int` }).from((bounded ? inner.limit(p.bound) : inner).as('matching'));
    };
  } else {
    ids = db.select({ id: scans.id }).from(scans).where(where).orderBy(desc(scans.scanDate), desc(scans.id)).limit(p.limit).offset(p.offset);
  }
  const latestReview = db
    .select(reviewFields)
    .from(scanReviews)
    .where(eq(scanReviews.scanId, scans.id))
    .orderBy(desc(scanReviews.reviewedAt), desc(scanReviews.id))
    .limit(1)
    .as('latest_review');
  const page = db
    .select({
      scan: listedScanColumns,
      patient: { id: patients.id, patientId: patients.patientId, name: patients.name },
      analysis: shownAnalysisColumns(currentAnalysis),
      review: {
        id: latestReview.id,
        scanId: latestReview.scanId,
        analysisId: latestReview.analysisId,
        status: latestReview.status,
        result: latestReview.result,
        reviewedAt: latestReview.reviewedAt,
        reviewerId: reviewer.id,
        reviewerName: reviewer.name,
        reviewerEmail: reviewer.email,
      },
      reviewedAnalysis: shownAnalysisColumns(reviewedAnalysis),
      // The bounded count rides in the page as a scalar subquery (run once, not per row): one
      // round trip, and the total from the same snapshot as the rows. A bound of 0 skips it.
      total: sql<number>`(${counted(true)})`,
    })
    .from(scans)
    .innerJoin(patients, eq(patients.id, scans.patientId))
    .leftJoin(currentAnalysis, eq(currentAnalysis.id, scans.currentAnalysisId))
    .leftJoinLateral(latestReview, sql`true`)
    .leftJoin(reviewer, eq(reviewer.id, latestReview.reviewedBy))
    .leftJoin(reviewedAnalysis, eq(reviewedAnalysis.id, latestReview.analysisId))
    .where(and(inArray(scans.id, ids), where))
    .orderBy(desc(scans.scanDate), desc(scans.id));
  return {
    page: page.prepare(`${name}_page`),
    bounded: counted(true).prepare(`${name}_bounded`),
    exact: counted(false).prepare(`${name}_count`),
  };
}

/** The list statements of each shape used so far. */
const listStatementsOf = preparedPerDb(() => new Map<string, ReturnType<typeof listStatements>>());

/**
 * List pages already read, on an embedded database (PGlite: one process, every write through
 * it) until anything is written: see platform/db/read-cache.ts. Keyed by the viewer (id and
 * role: the access rule the page applied) and the whole filter.
 */
const listPages = createReadCache<{ rows: ScanListRow[]; total: number }>();

/**
 * The patient a list is filtered by (`?patientId=`, a hospital id or `_id`) as the `_id` of a
 * patient the viewer may see, kept like the pages (patients and patient_doctors are among the
 * tables whose writes drop them). Resolved anew on every request it was the one statement of a
 * kept by-patient page, a query built per request: that row ran at a third of the others' rate.
 */
const listPatients = createReadCache<string | null>();

export function visiblePatientRowId(db: DbOrTx, viewer: Viewer, idOrPatientId: string): Promise<string | null> {
  const key = JSON.stringify([viewer.role, viewer.id, idOrPatientId]);
  return listPatients(db, key, async () => (await findVisiblePatient(db, viewer, idOrPatientId))?.id ?? null);
}

/** The scans of one list page the viewer may see, newest first, and how many match in all. */
export function listVisibleScans(db: DbOrTx, viewer: Viewer, filter: ScanListFilter): Promise<{ rows: ScanListRow[]; total: number }> {
  const key = JSON.stringify([viewer.role, viewer.id, filter.page, filter.limit, filter.status, filter.scanType, filter.patientRowId, filter.from, filter.until]);
  return listPages(db, key, () => readListPage(db, viewer, filter));
}

async function readListPage(db: DbOrTx, viewer: Viewer, filter: ScanListFilter): Promise<{ rows: ScanListRow[]; total: number }> {
  const admin = viewer.role === 'admin';
  const shape: ListShape = { admin, ...filter };
  const shapeKey = `${admin}${[filter.status, filter.scanType, filter.patientRowId, filter.from, filter.until].map((v) => (v === undefined ? 0 : 1)).join('')}`;
  const byShape = listStatementsOf(db);
  let statements = byShape.get(shapeKey);
  if (!statements) byShape.set(shapeKey, (statements = listStatements(db, shape)));

  const offset = (filter.page - 1) * filter.limit;
  const values = {
    viewerId: viewer.id,
    status: filter.status ?? null,
    scanType: filter.scanType ?? null,
    patientRowId: filter.patientRowId ?? null,
    from: filter.from?.toISOString() ?? null,
    until: filter.until?.toISOString() ?? null,
    limit: filter.limit,
    offset,
    perPatient: offset + filter.limit,
    bound: LARGE + 1,
  };
  const key = JSON.stringify([admin ? 'all' : viewer.id, filter.status, filter.scanType, filter.patientRowId, filter.from, filter.until]);
  let totals = totalsByDb.get(db);
  if (!totals) totalsByDb.set(db, (totals = createTotalsCache()));
  const { bounded, exact } = statements;
  const count = async (statement: typeof bounded) => (await statement.execute(values))[0]?.n ?? 0;
  const countAll = () => count(exact);

  // A list of more than LARGE scans has its total remembered: the page skips its count.
  const cached = totals.cached(key, countAll);
  const rows = await statements.page.execute({ ...values, bound: cached === undefined ? LARGE + 1 : 0 });
  // An empty page (past the end, or nothing matches) has no row to carry the count.
  const total = cached ?? (await totals.settle(key, rows[0]?.total ?? (await count(bounded)), countAll));
  return {
    rows: rows.map((r) => ({
      scan: r.scan,
      patient: r.patient,
      // (A left-joined object Drizzle may give as null or as an object of nulls.)
      analysis: r.analysis?.scanId ? (r.analysis as ShownAnalysis) : null,
      review: (r.review as Partial<ReviewFieldsRow> | null)?.id ? toReview(r.review as ReviewFieldsRow) : null,
      reviewedAnalysis: r.reviewedAnalysis?.scanId ? (r.reviewedAnalysis as ShownAnalysis) : null,
    })),
    total,
  };
}

/** The scan's status, its current analysis's refusal and its latest analysis, in one statement. */
function statusStatement(db: DbOrTx, role: Viewer['role']) {
  const latest = db
    .select({ status: analyses.status, stage: analyses.stage, progress: analyses.progress, jobId: analyses.jobId })
    .from(analyses)
    .where(eq(analyses.scanId, scans.id))
    .orderBy(desc(analyses.createdAt))
    .limit(1)
    .as('latest_analysis');
  return db
    .select({
      status: scans.status,
      failureReason: scans.failureReason,
      patientId: scans.patientId,
      refusalReason: currentAnalysis.refusalReason,
      latest: { status: latest.status, stage: latest.stage, progress: latest.progress, jobId: latest.jobId },
    })
    .from(scans)
    .leftJoin(currentAnalysis, eq(currentAnalysis.id, scans.currentAnalysisId))
    .leftJoinLateral(latest, sql`true`)
    .where(and(sql`${scans.id} = ${sql.placeholder('scanId')}`, patientVisibleTo({ role, id: p.viewerId }, scans.patientId)))
    .prepare(`scan_status_${role}`);
}

const statusStatements = {
  admin: preparedPerDb((db) => statusStatement(db, 'admin')),
  doctor: preparedPerDb((db) => statusStatement(db, 'doctor')),
};

export interface ScanStatusRow {
  status: ScanRow['status'];
  failureReason: string | null;
  patientId: string;
  /** Why the current analysis refused the image. */
  refusalReason: string | null;
  /** The scan's latest analysis (its job), null when it never had one. */
  latest: Pick<AnalysisRow, 'status' | 'stage' | 'progress' | 'jobId'> | null;
}

/** What GET /api/scans/:id/status shows of a scan the viewer may see; null when not theirs or not there. */
export async function visibleScanStatus(db: DbOrTx, viewer: Viewer, scanId: string): Promise<ScanStatusRow | null> {
  const [row] = await statusStatements[viewer.role](db).execute({ scanId, viewerId: viewer.id });
  if (!row) return null;
  const latest = row.latest as Partial<NonNullable<ScanStatusRow['latest']>> | null;
  return { ...row, latest: latest?.status ? (latest as ScanStatusRow['latest']) : null };
}

/** An analysis as the detail shows it: its result view and its line of the analysis history. */
export type DetailAnalysis = ShownAnalysis & Pick<AnalysisRow, 'id' | 'status' | 'scanType' | 'error' | 'createdAt' | 'completedAt'>;

export interface ScanDetailRows {
  scan: ScanRow;
  patient: Pick<ScanPatient, 'id' | 'patientId' | 'name'>;
  /** Every analysis, oldest first. */
  history: DetailAnalysis[];
  /** Every review, oldest first. */
  reviews: LatestReview[];
  annotations: AnnotationRow[];
  doctor: { id: string; name: string; email: string } | null;
}

/** JSON's timestamps are strings; the rows the views take carry Dates. */
const toDate = (v: string | null): Date | null => (v === null ? null : new Date(v));

/**
 * GET /api/scans/:id in one statement: the scan and its patient (access/'s rule), with its
 * analyses, reviews, annotations and doctor as JSON arrays beside it. Five statements before,
 * four of them in parallel on as many pool connections (and one after another on PGlite).
 */
function detailStatement(db: DbOrTx, role: Viewer['role']) {
  const a = analyses;
  const history = sql<unknown[]>`(select coalesce(json_agg(json_build_object(
      'id', ${a.id}, 'scanId', ${a.scanId}, 'status', ${a.status}, 'scanType', ${a.scanType},
      'modelId', ${a.modelId}, 'modelVersion', ${a.modelVersion}, 'result', ${a.result},
      'heatmapKey', ${a.heatmapKey}, 'hotRegion', ${a.hotRegion}, 'refusalReason', ${a.refusalReason},
      'error', ${a.error}, 'createdAt', ${a.createdAt}, 'completedAt', ${a.completedAt}
    ) order by ${a.createdAt}, ${a.id}), '[]') from ${a} where ${a.scanId} = ${scans.id})`;
  const r = scanReviews;
  const reviews = sql<unknown[]>`(select coalesce(json_agg(json_build_object(
      'id', ${r.id}, 'scanId', ${r.scanId}, 'analysisId', ${r.analysisId}, 'status', ${r.status},
      'result', ${r.result}, 'reviewedAt', ${r.reviewedAt},
      'reviewerId', ${users.id}, 'reviewerName', ${users.name}, 'reviewerEmail', ${users.email}
    ) order by ${r.reviewedAt}, ${r.id}), '[]') from ${r} left join ${users} on ${users.id} = ${r.reviewedBy} where ${r.scanId} = ${scans.id})`;
  const n = annotations;
  const notes = sql<unknown[]>`(select coalesce(json_agg(json_build_object(
      'id', ${n.id}, 'x', ${n.x}, 'y', ${n.y}, 'text', ${n.text}, 'createdAt', ${n.createdAt},
      'authorId', ${users.id}, 'authorName', ${users.name}
    ) order by ${n.createdAt}, ${n.id}), '[]') from ${n} left join ${users} on ${users.id} = ${n.createdBy} where ${n.scanId} = ${scans.id})`;
  const doctor = sql<unknown>`(select json_build_object('id', ${users.id}, 'name', ${users.name}, 'email', ${users.email}) from ${users} where ${users.id} = ${scans.doctorId})`;
  return db
    .select({
      scan: scans,
      patient: { id: patients.id, patientId: patients.patientId, name: patients.name },
      history,
      reviews,
      annotations: notes,
      doctor,
    })
    .from(scans)
    .innerJoin(patients, eq(patients.id, scans.patientId))
    .where(and(sql`${scans.id} = ${sql.placeholder('scanId')}`, patientVisibleTo({ role, id: p.viewerId }, scans.patientId)))
    .prepare(`scan_detail_${role}`);
}

const detailStatements = {
  admin: preparedPerDb((db) => detailStatement(db, 'admin')),
  doctor: preparedPerDb((db) => detailStatement(db, 'doctor')),
};

type Json<T> = { [K in keyof T]: T[K] extends Date ? string : T[K] extends Date | null ? string | null : T[K] };

/** Everything GET /api/scans/:id shows of a scan the viewer may see (`scanId` a UUID); null when not theirs or not there. */
export async function visibleScanDetail(db: DbOrTx, viewer: Viewer, scanId: string): Promise<ScanDetailRows | null> {
  const [row] = await detailStatements[viewer.role](db).execute({ scanId, viewerId: viewer.id });
  if (!row) return null;
  return {
    scan: row.scan,
    patient: row.patient,
    history: (row.history as Json<DetailAnalysis>[]).map((h) => ({ ...h, createdAt: new Date(h.createdAt), completedAt: toDate(h.completedAt) })),
    reviews: (row.reviews as Json<ReviewFieldsRow>[]).map((v) => toReview({ ...v, reviewedAt: new Date(v.reviewedAt) })),
    annotations: (row.annotations as Json<AnnotationRow>[]).map((v) => ({ ...v, createdAt: new Date(v.createdAt) })),
    doctor: row.doctor as ScanDetailRows['doctor'],
  };
}

/** The columns an upload sets on a new scan and its first analysis; the rest take their defaults. */
const UPLOADED_SCAN_COLUMNS = [
  'id',
  'patientId',
  'doctorId',
  'scanDate',
  'scanType',
  'status',
  'originalFormat',
  'originalKey',
  'imageKey',
  'thumbnailKey',
  'width',
  'height',
  'fileSize',
  'sha256',
  'dicom',
  'studyInstanceUid',
  'seriesInstanceUid',
  'sopInstanceUid',
] as const satisfies ReadonlyArray<keyof NewScanRow>;
const QUEUED_ANALYSIS_COLUMNS = ['id', 'jobId', 'scanId', 'scanType', 'requestedBy', 'status', 'progress'] as const satisfies ReadonlyArray<
  keyof NewAnalysisRow
>;
type UploadedScanValues = Pick<NewScanRow, (typeof UPLOADED_SCAN_COLUMNS)[number]>;
type QueuedAnalysisValues = Pick<NewAnalysisRow, (typeof QUEUED_ANALYSIS_COLUMNS)[number]>;

function placeholders<K extends string>(columns: readonly K[], prefix: string): Record<K, ReturnType<typeof sql.placeholder>> {
  return Object.fromEntries(columns.map((c) => [c, sql.placeholder(`${prefix}${c}`)])) as Record<K, ReturnType<typeof sql.placeholder>>;
}

/**
 * A new scan with its first analysis row, in one statement (one round trip of an upload): the
 * analysis is inserted by a data-modifying CTE, its foreign key checked at the statement's end.
 * Built once with placeholders (every upload runs it, in its own transaction).
 */
const scanWithAnalysisInsert = builtOncePerDb('insert_scan_with_analysis', (db) => {
  const queued = db.$with('queued_analysis').as(db.insert(analyses).values(placeholders(QUEUED_ANALYSIS_COLUMNS, 'analysis_')).returning({ id: analyses.id }));
  return db.with(queued).insert(scans).values(placeholders(UPLOADED_SCAN_COLUMNS, 'scan_')).returning();
});

export async function insertScanWithAnalysis(tx: DbOrTx, values: UploadedScanValues, analysis: QueuedAnalysisValues): Promise<ScanRow> {
  const params: Record<string, unknown> = {};
  // An absent value is NULL (the upload gives every column here that has a default: status, progress).
  for (const c of UPLOADED_SCAN_COLUMNS) params[`scan_${c}`] = values[c] ?? null;
  for (const c of QUEUED_ANALYSIS_COLUMNS) params[`analysis_${c}`] = analysis[c] ?? null;
  const [row] = await scanWithAnalysisInsert(tx).execute(params);
  return row!;
}

/** A scan's original kept in the database (src/scans/originals.ts), in the transaction that inserts its scan. */
export async function insertScanOriginal(tx: DbOrTx, scanId: string, bytes: Buffer): Promise<void> {
  await tx.insert(scanOriginals).values({ scanId, bytes });
}

/** Columns of `table` by key, with their SQL names and types. */
function columnsOf<K extends string>(table: PgTable, keys: readonly K[]): Array<{ key: K; column: PgColumn }> {
  const all = getTableColumns(table) as Record<string, PgColumn>;
  return keys.map((key) => ({ key, column: all[key]! }));
}

/** `select $1::type, $2::type...` of the given columns' placeholders (a SELECT's values need their types). */
const typedPlaceholders = (columns: Array<{ key: string; column: PgColumn }>, prefix: string) =>
  sql.join(
    columns.map(({ key, column }) => sql`${sql.placeholder(`${prefix}${key}`)}::${sql.raw(column.getSQLType())}`),
    sql`, `,
  );
const columnList = (columns: Array<{ column: PgColumn }>) => sql.raw(columns.map(({ column }) => `"${column.name}"`).join(', '));

const uploadScanColumns = columnsOf(scans, UPLOADED_SCAN_COLUMNS.filter((c) => c !== 'patientId'));
const queuedAnalysisColumns = columnsOf(analyses, QUEUED_ANALYSIS_COLUMNS);
const scanColumns = Object.entries(getTableColumns(scans)) as Array<[keyof ScanRow, PgColumn]>;

/** What an upload's one statement needs besides the scan's own values. */
interface UploadExtras {
  /** The event's delivery jobs (webhooks/ EventPublisher.deliveryRecords), for the patient's id given as SQL. */
  deliveryRecords: (patientId: SQL, newPatientOwner?: SQL, value?: (key: string) => SQLWrapper) => SQL;
}

/**
 * An upload in one statement (one round trip, no BEGIN/COMMIT): the patient by hospital
 * identifier, if the viewer may add scans to it (src/access's rule) and the form's patientName,
 * when given, is the one on record as written, or else a new patient assigned to the viewer
 * when none has the identifier and there is a name to create it with; then the scan, its
 * analysis row, its analysis job and the event's webhook deliveries (pg-boss's own insert) and
 * the jobs' wake-up NOTIFY, and the request's audit events (src/audit auditInAdvance). A statement is atomic and its NOTIFY goes out at its commit, as the
 * transaction's did. When the patient is not the viewer's, is named otherwise, or cannot be
 * created, it writes nothing and answers no row: the caller then takes the transaction, which
 * gives the exact refusal (or finds the patient a concurrent upload just created).
 */
/**
 * Whether the patient's `name` shares a word with a DICOM header's name (`words`, a JSON array of
 * lower-case words; null: true). A quick filter, not the judge: a name it does not find a shared
 * word in (accents, say, which lower() keeps) writes nothing, and the caller's transaction then
 * compares the two exactly as service.ts does, and refuses or files the upload.
 */
function headerNameShared(name: SQL, words: SQL): SQL {
  return sql`(${words} is null or regexp_split_to_array(lower(${name}), '[^[:alnum:]]+') && array(select jsonb_array_elements_text(${words})))`;
}

function uploadStatement(db: DbOrTx, role: Viewer['role'], mayCreate: boolean, inlineOriginal: boolean, extras: UploadExtras): SQL {
  const viewerMayAdd = role === 'admin' ? sql`true` : sql`p.id in (select patient_id from patient_doctors where doctor_id = ${sql.placeholder('viewerId')}::uuid)`;
  const patientId = sql`(select id from upload_patient)`;
  // The uploader, when this statement creates the patient and assigns it to them: the
  // statement's subscribers query cannot see that assignment (one snapshot for all its parts).
  const newPatientOwner = mayCreate ? sql`(select ${sql.placeholder('viewerId')}::uuid from created_patient)` : undefined;
  const records = sql`(select jsonb_agg(r)::json from (select ${sql.placeholder('analysisJob')}::jsonb as r union all ${extras.deliveryRecords(patientId, newPatientOwner)}) as records where exists (select 1 from upload_patient))`;
  const scanJson = sql.raw(scanColumns.map(([key, column]) => `'${key}', s."${column.name}"`).join(', '));
  // A new patient (no row with the identifier, a name to create it with) is created and
  // assigned to the viewer, as createPatientForUpload does; a concurrent creation of the same
  // one makes this insert nothing (on conflict), and the caller's transaction then finds it.
  // For a patient on record (`mayCreate` false: insertUploadInOneStatement) the two inserts would
  // write nothing and are left out: an insert of no row still fires its tables' statement-level
  // triggers (~0.12 ms of the server's CPU, docs/benchmarks/ingest.md).
  const creation = mayCreate
    ? sql`created_patient as (
      insert into patients (id, patient_id, name, created_by)
      select ${sql.placeholder('newPatientRowId')}::uuid, ${sql.placeholder('patientId')}::text, ${sql.placeholder('newName')}::text, ${sql.placeholder('viewerId')}::uuid
       where ${sql.placeholder('newName')}::text is not null and not exists (select 1 from found_patient)
      on conflict do nothing
      returning id, patient_id, name
    ),
    assigned_doctor as (
      insert into patient_doctors (patient_id, doctor_id) select id, ${sql.placeholder('viewerId')}::uuid from created_patient
    ),`
    : sql``;
  const created = mayCreate ? sql`union all
      select id, patient_id, name from created_patient` : sql``;
  return sql`with found_patient as (
      select p.id, p.patient_id, p.name, ${viewerMayAdd} as may_add from patients p where p.patient_id = ${sql.placeholder('patientId')}::text
    ),
    ${creation}
    upload_patient as (
      select id, patient_id, name from found_patient
       where may_add and (${sql.placeholder('formName')}::text is null or name = ${sql.placeholder('formName')}::text)
         and ${headerNameShared(sql`name`, sql`${sql.placeholder('headerNameWords')}::jsonb`)}
      ${created}
    ),
    queued_analysis as (
      insert into analyses (${columnList(queuedAnalysisColumns)}) select ${typedPlaceholders(queuedAnalysisColumns, 'analysis_')} from upload_patient returning id
    ),
    inserted_scan as (
      insert into scans ("patient_id", ${columnList(uploadScanColumns)}) select upload_patient.id, ${typedPlaceholders(uploadScanColumns, 'scan_')} from upload_patient returning *
    ),
    ${inlineOriginal ? sql`stored_original as (insert into scan_originals (scan_id, bytes) select id, ${sql.placeholder('original')}::bytea from inserted_scan),` : sql``}
    queued_jobs as (${insertJobsSql(records)}),
    notified as (${notifyJobsSql('queued_jobs')}),
    audited as (${auditRowsInsertSql(sql`${sql.placeholder('auditRows')}`, patientId, sql`exists (select 1 from upload_patient)`)})
    select json_build_object(${scanJson}) as scan, json_build_object('id', p.id, 'patientId', p.patient_id, 'name', p.name) as patient
      from inserted_scan s cross join upload_patient p cross join notified`;
}

const pgDialect = new PgDialect();
/**
 * The statement's text and parameter slots by role and variant (whether it may create the
 * patient), built once per process: its text depends on nothing else (values are placeholders),
 * and the same text serves PGlite and PostgreSQL. Each is a named statement on a server.
 */
const uploadQueries = new Map<string, ReturnType<PgDialect['sqlToQuery']>>();

/** `(u.json->>'key')::type, ...` of the given columns, read from a jsonb column of the upload's row. */
const typedFields = (columns: Array<{ key: string; column: PgColumn }>, json: string) =>
  sql.raw(columns.map(({ key, column }) => `(${json}->>'${key}')::${column.getSQLType()}`).join(', '));

/**
 * A group of uploads in one statement (uploadGroupCommit): what uploadStatement writes for one
 * upload, for each row of the one jsonb parameter (an array of uploadGroupRow), set-based, so
 * the statement's start-up, parse and bind, its tables' statement-level triggers, the round
 * trip and the commit are paid once per group instead of once per upload
 * (docs/benchmarks/ingest.md). Each upload has its own viewer (id and role), patient and
 * values. The same rules as uploadStatement's, per upload: the patient on record if that
 * viewer may add scans to it and the form's name, when given, is the one on record; else a new
 * patient, created once for the uploads of the group that name it (the first of them gives its
 * row id, name and creator, assigned to it), and taken by those of them that would find it
 * after that first upload's commit (the creator, an admin) with a matching form name. An upload
 * whose patient cannot be taken writes nothing and has no row in the answer; the caller then
 * takes its transaction, which gives the exact refusal or finds the patient.
 */
function uploadGroupStatement(mayCreate: boolean, inlineOriginals: boolean, extras: UploadExtras): SQL {
  const group = sql.placeholder('uploads');
  // The group's originals kept in the database, end to end in one bytea parameter (sent as
  // binary, not encoded into the JSON); each upload's row gives where its own bytes lie.
  const originals = inlineOriginals
    ? sql`stored_original as (
      insert into scan_originals (scan_id, bytes)
      select (t.scan->>'id')::uuid, substring(${sql.placeholder('originals')}::bytea from t.original_at + 1 for t.original_len) from taken t where t.original_len is not null
    ),`
    : sql``;
  const creation = mayCreate
    ? sql`creating as (
      select distinct on (u.patient_id) u.new_patient_row_id, u.patient_id, u.new_name, u.viewer_id from upload u
       where u.new_name is not null and not exists (select 1 from patients p where p.patient_id = u.patient_id)
       order by u.patient_id, u.n
    ),
    created_patient as (
      insert into patients (id, patient_id, name, created_by) select new_patient_row_id, patient_id, new_name, viewer_id from creating
      on conflict do nothing
      returning id, patient_id, name, created_by
    ),
    assigned_doctor as (
      insert into patient_doctors (patient_id, doctor_id) select id, created_by from created_patient
    ),`
    : sql``;
  const created = mayCreate
    ? sql`union all
      select u.n, c.id, c.patient_id, c.name, c.created_by from upload u join created_patient c on c.patient_id = u.patient_id
       where (u.admin or u.viewer_id = c.created_by) and (u.form_name is null or c.name = u.form_name) and ${headerNameShared(sql`c.name`, sql`u.header_name_words`)}`
    : sql``;
  // An upload's delivery values (webhooks/ deliveryValues) are its row's, not placeholders.
  const value = (key: string) => sql.raw(`(t.extra->>'${key}')`);
  const deliveries = extras.deliveryRecords(sql`t.patient_row_id`, mayCreate ? sql`t.new_owner` : undefined, value);
  const records = sql`(select jsonb_agg(r)::json from (
      select t.analysis_job as r from taken t
      union all
      select d.r from taken t cross join lateral (${deliveries}) as d(r)
    ) as records)`;
  const scanJson = sql.raw(scanColumns.map(([key, column]) => `'${key}', s."${column.name}"`).join(', '));
  return sql`with upload as (
      select * from jsonb_to_recordset(${group}::jsonb) as u(n int, viewer_id uuid, admin boolean, patient_id text, form_name text, header_name_words jsonb, new_name text,
        new_patient_row_id uuid, scan jsonb, analysis jsonb, analysis_job jsonb, audit_rows jsonb, extra jsonb, original_at int, original_len int)
    ),
    found_patient as (
      select u.n, p.id, p.patient_id, p.name from upload u join patients p on p.patient_id = u.patient_id
       where (u.admin or p.id in (select patient_id from patient_doctors where doctor_id = u.viewer_id))
         and (u.form_name is null or p.name = u.form_name)
         and ${headerNameShared(sql`p.name`, sql`u.header_name_words`)}
    ),
    ${creation}
    upload_patient as (
      select n, id, patient_id, name, null::uuid as new_owner from found_patient
      ${created}
    ),
    taken as (
      select u.*, up.id as patient_row_id, up.patient_id as patient_hid, up.name as patient_name, up.new_owner
        from upload u join upload_patient up on up.n = u.n
    ),
    queued_analysis as (
      insert into analyses (${columnList(queuedAnalysisColumns)}) select ${typedFields(queuedAnalysisColumns, 't.analysis')} from taken t returning id
    ),
    inserted_scan as (
      insert into scans ("patient_id", ${columnList(uploadScanColumns)}) select t.patient_row_id, ${typedFields(uploadScanColumns, 't.scan')} from taken t returning *
    ),
    ${originals}
    queued_jobs as (${insertJobsSql(records)}),
    notified as (${notifyJobsSql('queued_jobs')}),
    audited as (${auditRowsOfEachInsertSql(sql`taken t`, sql`t.audit_rows`, sql`t.patient_row_id`)})
    select t.n, json_build_object(${scanJson}) as scan, json_build_object('id', t.patient_row_id, 'patientId', t.patient_hid, 'name', t.patient_name) as patient
      from inserted_scan s join taken t on s.id = (t.scan->>'id')::uuid cross join notified`;
}

/** An upload as a row of uploadGroupStatement's parameter. */
function uploadGroupRow(n: number, values: UploadValues, mayCreate: boolean, originalAt: number): Record<string, unknown> {
  const scan: Record<string, unknown> = {};
  for (const { key, column } of uploadScanColumns) scan[key] = values.scan[key] == null ? null : column.mapToDriverValue(values.scan[key]);
  const analysis: Record<string, unknown> = {};
  for (const { key, column } of queuedAnalysisColumns) analysis[key] = values.analysis[key] == null ? null : column.mapToDriverValue(values.analysis[key]);
  return {
    n,
    viewer_id: values.viewer.id,
    admin: values.viewer.role === 'admin',
    patient_id: values.patientId,
    form_name: values.formName,
    header_name_words: values.headerNameWords ?? null,
    // A patient on record (see insertUploadInOneStatement) is not created here.
    new_name: mayCreate ? values.newName : null,
    new_patient_row_id: randomUUID(),
    scan,
    analysis,
    analysis_job: values.analysisJob,
    audit_rows: values.auditRows,
    extra: values.extraValues,
    original_at: values.original ? originalAt : null,
    original_len: values.original?.length ?? null,
  };
}

/**
 * Writes a group of uploads with uploadGroupStatement; each upload's answer by its place in
 * `group`, null for one that wrote nothing. The statement with the patients' creation only
 * when one of them may create its patient (insertUploadInOneStatement's guess, per upload).
 */
async function insertUploadGroup(db: DbOrTx, group: readonly UploadValues[]): Promise<UploadSaved[]> {
  const saved = await runUploadGroup(
    db,
    group,
    group.map((values) => values.newName !== null && !patientsOnRecord.has(values.patientId)),
  );
  saved.forEach((row, n) => {
    if (row) rememberPatient(group[n]!.patientId);
  });
  return saved;
}

/** insertUploadGroup's statement, `creates` saying which uploads may create their patient. */
async function runUploadGroup(db: DbOrTx, group: readonly UploadValues[], creates: readonly boolean[]): Promise<UploadSaved[]> {
  const mayCreate = creates.some(Boolean);
  const inline = group.some((values) => values.original);
  const name = `upload_group${mayCreate ? '' : '_known'}${inline ? '_original' : ''}`;
  let query = uploadQueries.get(name);
  if (!query) uploadQueries.set(name, (query = pgDialect.sqlToQuery(uploadGroupStatement(mayCreate, inline, group[0]!.extras))));
  let at = 0;
  const rows = group.map((values, n) => {
    const row = uploadGroupRow(n, values, creates[n]!, at);
    at += values.original?.length ?? 0;
    return row;
  });
  const uploads = JSON.stringify(rows);
  const originals = inline ? Buffer.concat(group.flatMap((values) => (values.original ? [values.original] : [])), at) : null;
  const params = fillPlaceholders(query.params, inline ? { uploads, originals } : { uploads });
  const result: unknown = await db._.session.prepareQuery({ sql: query.sql, params }, undefined, name, false).execute();
  const answered = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as Array<{
    n: number;
    scan: Record<string, unknown>;
    patient: { id: string; patientId: string; name: string };
  }>;
  const saved: UploadSaved[] = group.map(() => null);
  for (const row of answered) saved[row.n] = { scan: scanFromJson(row.scan), patient: row.patient };
  return saved;
}

/** A scan row as JSON (json_build_object's timestamps are text) mapped as Drizzle maps the columns. */
function scanFromJson(json: Record<string, unknown>): ScanRow {
  const row: Record<string, unknown> = {};
  for (const [key, column] of scanColumns) {
    const value = json[key];
    row[key] = value === null || value === undefined ? null : column.mapFromDriverValue(value);
  }
  return row as ScanRow;
}

/** The upload's statement, the variant that may create the patient or the one that may not. */
async function runUploadStatement(
  mayCreate: boolean,
  db: DbOrTx,
  {
    viewer,
    patientId,
    formName,
    headerNameWords,
    newName,
    scan,
    analysis,
    analysisJob,
    extras,
    extraValues,
    auditRows,
    original,
  }: {
    viewer: Viewer;
    /** A hospital identifier (not a UUID). */
    patientId: string;
    formName: string | null;
    /**
     * The words of the DICOM header's PatientName (service.ts nameWords) when the patient found
     * by identifier must share one with it; null when not checked here.
     */
    headerNameWords?: readonly string[] | null;
    /** The name to create the patient with when there is none with `patientId` (none: not created here). */
    newName: string | null;
    scan: Omit<UploadedScanValues, 'patientId'>;
    analysis: QueuedAnalysisValues;
    analysisJob: JobRecord;
    extras: UploadExtras;
    extraValues: Record<string, unknown>;
    /** The request's audit events, committed with the upload (STATEMENT_PATIENT for its patient). */
    auditRows: readonly NewAuditRow[];
    /** The original file, kept in the database with the scan's row (src/scans/originals.ts); null when it is in the file store. */
    original?: Buffer | null;
  },
): Promise<{ scan: ScanRow; patient: { id: string; patientId: string; name: string } } | null> {
  const name = `upload_scan_${viewer.role}${mayCreate ? '' : '_known'}${original ? '_original' : ''}`;
  let query = uploadQueries.get(name);
  if (!query) uploadQueries.set(name, (query = pgDialect.sqlToQuery(uploadStatement(db, viewer.role, mayCreate, Boolean(original), extras))));
  const values: Record<string, unknown> = { ...extraValues, viewerId: viewer.id, patientId, formName, headerNameWords: headerNameWords ? JSON.stringify(headerNameWords) : null, newName, newPatientRowId: randomUUID(), analysisJob: JSON.stringify(analysisJob), auditRows: JSON.stringify(auditRows), original: original ?? null };
  for (const { key, column } of uploadScanColumns) values[`scan_${key}`] = scan[key] == null ? null : column.mapToDriverValue(scan[key]);
  for (const { key, column } of queuedAnalysisColumns) values[`analysis_${key}`] = analysis[key] == null ? null : column.mapToDriverValue(analysis[key]);
  const params = fillPlaceholders(query.params, values);
  const result: unknown = await db._.session.prepareQuery({ sql: query.sql, params }, undefined, name, false).execute();
  // pg answers { rows }, PGlite the rows themselves.
  const rows = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as Array<{ scan: Record<string, unknown>; patient: { id: string; patientId: string; name: string } }>;
  const [row] = rows;
  return row ? { scan: scanFromJson(row.scan), patient: row.patient } : null;
}

/**
 * Hospital identifiers of the patients this process's uploads recently found or created
 * (bounded, least recently used out). A guess, never trusted for what is written: see
 * insertUploadInOneStatement.
 */
const patientsOnRecord = new Map<string, true>();
const MAX_PATIENTS_ON_RECORD = 10_000;

function rememberPatient(patientId: string): void {
  patientsOnRecord.delete(patientId);
  patientsOnRecord.set(patientId, true);
  if (patientsOnRecord.size > MAX_PATIENTS_ON_RECORD) patientsOnRecord.delete(patientsOnRecord.keys().next().value!);
}

/**
 * Inserts an upload's scan, analysis, jobs and deliveries, and its patient when new, in one
 * statement (see uploadStatement); null when it wrote nothing. For a patient on record (no name
 * to create one with, or one an upload of this process found or created recently: most
 * uploads, DICOM headers naming the same patients again) it is the variant without the
 * patient's creation. When that guess is wrong (the patient was deleted since) it writes
 * nothing, as for any patient it cannot take, and the caller's transaction creates the patient.
 */
async function insertUploadInOneStatement(db: DbOrTx, values: Parameters<typeof runUploadStatement>[2]): ReturnType<typeof runUploadStatement> {
  const mayCreate = values.newName !== null && !patientsOnRecord.has(values.patientId);
  const saved = await runUploadStatement(mayCreate, db, values);
  if (saved !== null) rememberPatient(values.patientId);
  return saved;
}

/** What an upload's statement writes (service.ts uploadStatementValues builds it). */
export type UploadValues = Parameters<typeof insertUploadInOneStatement>[1];
type UploadSaved = Awaited<ReturnType<typeof insertUploadInOneStatement>>;
/** A committed upload's scan and its patient, as the upload's answer shows them. */
export type UploadedScan = NonNullable<UploadSaved>;

/**
 * The scan an upload wrote, with its patient, read by the upload's own scan id (made by the
 * server before the write, so no other request writes it); null when there is none. How an
 * upload whose write reported an error learns whether its rows were committed after all
 * (service.ts): a read on the handle, not on the connection that failed.
 */
export async function uploadedScan(db: Db, scanId: string): Promise<UploadedScan | null> {
  const [row] = await db
    .select({ scan: scans, patient: { id: patients.id, patientId: patients.patientId, name: patients.name } })
    .from(scans)
    .innerJoin(patients, eq(patients.id, scans.patientId))
    .where(eq(scans.id, scanId));
  return row ?? null;
}

/**
 * Every statement an upload may run (src/scans/service.ts warmUpUploads), run once on one of
 * the handle's connections, in a transaction that is rolled back: each upload statement that
 * creates its patient and each that finds it, alone (a doctor's and an admin's) and as a group,
 * for a throwaway user and patient. A fresh process's first uploads then find them parsed
 * (named statements outlive the rollback on their connection) and the server's caches filled
 * (the tables' and triggers' metadata, the foreign keys' and PL/pgSQL functions' plans), where
 * the first upload of each kind paid 10-40 ms for them, with the uploads behind it waiting
 * (docs/benchmarks/ingest.md). Nothing of it is committed.
 */
export async function warmUpUploadStatements(db: Db, upload: (viewer: Viewer) => UploadValues): Promise<void> {
  const viewerId = randomUUID();
  const doctor: Viewer = { id: viewerId, role: 'doctor' };
  const admin: Viewer = { id: viewerId, role: 'admin' };
  try {
    await db.transaction(async (tx) => {
      await tx.insert(users).values({ id: viewerId, name: 'Start-up check', email: `start-up-check-${viewerId}@imagemedix.invalid`, role: 'doctor' });
      for (const viewer of [doctor, admin]) {
        const values = upload(viewer);
        // The patient created by the first is found by the second.
        await runUploadStatement(true, tx, values);
        await runUploadStatement(false, tx, { ...upload(viewer), patientId: values.patientId });
      }
      const group = [0, 1].map(() => upload(doctor));
      await runUploadGroup(tx, group, [true, true]);
      await runUploadGroup(
        tx,
        group.map((values) => ({ ...upload(doctor), patientId: values.patientId })),
        [false, false],
      );
      tx.rollback();
    });
  } catch (err) {
    if (!(err instanceof TransactionRollbackError)) throw err;
  }
}

/** Uploads per shared transaction. */
const MAX_GROUP_UPLOADS = 16;
const uploadGroups = new WeakMap<Db, (values: UploadValues) => Promise<UploadSaved>>();

/**
 * insertUploadInOneStatement with group commit: uploads that arrive while the previous group is
 * being written are written together by one statement (insertUploadGroup: one commit, one
 * delivery of its NOTIFYs to each listener, and one statement's start-up, triggers and round
 * trip instead of one per upload, docs/benchmarks/ingest.md). Each upload still resolves only
 * once its own rows are committed. A group that fails (one upload's rows refused, a deadlock)
 * is rolled back whole and each of its uploads is written again on its own, so one upload's
 * failure is never another's. An upload alone is its one statement, as before. A group whose
 * statement committed but whose answer was lost (the connection dropped) has each upload
 * refused on its own for a duplicate key (its ids are taken): never written twice, and found
 * committed by the caller (service.ts storeUpload reads the scan by id).
 */
export function insertUploadGrouped(db: Db, values: UploadValues): Promise<UploadSaved> {
  let write = uploadGroups.get(db);
  if (!write) uploadGroups.set(db, (write = uploadGroupCommit(db)));
  return write(values);
}

function uploadGroupCommit(db: Db): (values: UploadValues) => Promise<UploadSaved> {
  type Waiting = { values: UploadValues; resolve: (saved: UploadSaved) => void; reject: (err: unknown) => void };
  const queue: Waiting[] = [];
  let running = false;
  const alone = (w: Waiting) => insertUploadInOneStatement(db, w.values).then(w.resolve, w.reject);

  async function flush(): Promise<void> {
    while (queue.length > 0) {
      const group = queue.splice(0, MAX_GROUP_UPLOADS);
      if (group.length === 1) {
        await alone(group[0]!);
        continue;
      }
      let saved: UploadSaved[];
      try {
        saved = await insertUploadGroup(
          db,
          group.map((w) => w.values),
        );
      } catch {
        await Promise.all(group.map(alone));
        continue;
      }
      group.forEach((w, i) => w.resolve(saved[i]!));
    }
    running = false;
  }

  return (values) =>
    new Promise<UploadSaved>((resolve, reject) => {
      queue.push({ values, resolve, reject });
      if (!running) {
        running = true;
        setImmediate(() => void flush());
      }
    });
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

/**
 * Every stored file the rows of these scans name, read before the rows are deleted: the scan's
 * original and renditions, each analysis's heatmap (also the key a heatmap written but not yet
 * recorded would have: a deletion during an analysis leaves no orphan) and each report.
 */
export async function storedFilesOf(db: DbOrTx, scanIds: readonly string[]): Promise<ScanFiles[]> {
  if (scanIds.length === 0) return [];
  const ids = [...scanIds];
  // One after another: the callers pass their transaction, one connection, where queries sent at
  // once only queue in the driver (pg warns, and pg 9 refuses: "client is already executing a query").
  const scanRows = await db
    .select({ id: scans.id, originalKey: scans.originalKey, imageKey: scans.imageKey, thumbnailKey: scans.thumbnailKey })
    .from(scans)
    .where(inArray(scans.id, ids));
  const analysisRows = await db.select({ id: analyses.id, scanId: analyses.scanId, heatmapKey: analyses.heatmapKey }).from(analyses).where(inArray(analyses.scanId, ids));
  const reportRows = await db.select({ scanId: reports.scanId, key: reports.storageKey }).from(reports).where(inArray(reports.scanId, ids));
  const keys = new Map(scanRows.map((s) => [s.id, new Set([s.originalKey, s.imageKey, s.thumbnailKey])]));
  for (const a of analysisRows) {
    keys.get(a.scanId)?.add(heatmapKey(a.scanId, a.id));
    if (a.heatmapKey) keys.get(a.scanId)?.add(a.heatmapKey);
  }
  for (const r of reportRows) keys.get(r.scanId)?.add(r.key);
  return [...keys].map(([id, set]) => ({ id, keys: [...set] }));
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

const reviewFields = {
  id: scanReviews.id,
  scanId: scanReviews.scanId,
  analysisId: scanReviews.analysisId,
  status: scanReviews.status,
  result: scanReviews.result,
  reviewedAt: scanReviews.reviewedAt,
  reviewedBy: scanReviews.reviewedBy,
};
const reviewColumns = { ...reviewFields, reviewerId: users.id, reviewerName: users.name, reviewerEmail: users.email };

/** A review row with its reviewer's columns (null when the reviewer's account is gone). */
type ReviewFieldsRow = Omit<LatestReview, 'reviewer'> & { reviewerId: string | null; reviewerName: string | null; reviewerEmail: string | null };

function toReview(r: ReviewFieldsRow): LatestReview {
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

/**
 * Locks the scan's row until the transaction ends, so reviews of one scan are written one after
 * another: each merges into, and checks its If-Match against, the review before it.
 */
export async function lockScan(tx: DbOrTx, id: string): Promise<void> {
  await tx.select({ id: scans.id }).from(scans).where(eq(scans.id, id)).for('update');
}

export async function insertReview(db: DbOrTx, values: typeof scanReviews.$inferInsert): Promise<void> {
  await db.insert(scanReviews).values(values);
}

const annotationsOfScan = preparedPerDb((db) =>
  db
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
    .where(eq(annotations.scanId, sql.placeholder('scanId')))
    .orderBy(asc(annotations.createdAt), asc(annotations.id))
    .prepare('scan_annotations_of'),
);

export async function annotationsOf(db: DbOrTx, scanId: string) {
  return annotationsOfScan(db).execute({ scanId });
}

export type AnnotationRow = Awaited<ReturnType<typeof annotationsOf>>[number];

export async function insertAnnotation(db: DbOrTx, values: typeof annotations.$inferInsert): Promise<void> {
  await db.insert(annotations).values(values);
}

export async function insertReport(db: DbOrTx, values: typeof reports.$inferInsert): Promise<void> {
  await db.insert(reports).values(values);
}

/** The scan's latest report (the one its documented path serves), or null when it has none. */
export async function latestReport(db: DbOrTx, scanId: string): Promise<{ id: string; fingerprint: string | null; createdAt: Date } | null> {
  const [row] = await db
    .select({ id: reports.id, fingerprint: reports.fingerprint, createdAt: reports.createdAt })
    .from(reports)
    .where(eq(reports.scanId, scanId))
    .orderBy(desc(reports.createdAt), desc(reports.id))
    .limit(1);
  return row ?? null;
}

/**
 * Where a report of the scan is stored (its row's key: reports made before the shard layout sit
 * elsewhere), by its id, or the latest when `reportId` is null; null when there is none.
 */
export async function reportStorageKey(db: DbOrTx, scanId: string, reportId: string | null): Promise<string | null> {
  const [row] = await db
    .select({ key: reports.storageKey })
    .from(reports)
    .where(reportId === null ? eq(reports.scanId, scanId) : and(eq(reports.scanId, scanId), eq(reports.id, reportId)))
    .orderBy(desc(reports.createdAt), desc(reports.id))
    .limit(1);
  return row?.key ?? null;
}

/**
 * The map of the scan's analysis whose heatmap is stored at `key`: null when no analysis of the
 * scan names that key, or it is one from before maps were kept (its PNG was stored at once).
 */
export async function heatmapMapAt(db: DbOrTx, scanId: string, key: string): Promise<HeatmapMap | null> {
  const [row] = await db
    .select({ map: analyses.heatmapMap })
    .from(analyses)
    .where(and(eq(analyses.scanId, scanId), eq(analyses.heatmapKey, key)))
    .limit(1);
  return row?.map ?? null;
}

/** Which of these scan ids have a row (the sweep of stored files whose scan was never committed). */
export async function existingScanIds(db: Db, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await db.select({ id: scans.id }).from(scans).where(inArray(scans.id, [...ids]));
  return new Set(rows.map((row) => row.id));
}
