/**
 * How a scan is shown: one mapper from the stored rows (scan, patient, current analysis,
 * latest review) to the API's shape, so the analysis pipeline only has to fill the analyses
 * row and every endpoint shows the same thing.
 *
 * `modelResult` is the current model output exactly as stored; `result` is what the reader
 * should act on: the standing physician review laid over the model output it judged, when the
 * scan was reviewed. A later analysis never replaces a review (`review.newerAnalysis` flags it).
 */
import type { UrlSigner } from '../platform/signing.js';
import { SCAN_TYPE_IDS, scanTypeSpec, type ResultView, type ReviewedFinding } from '../scan-types/index.js';
import type { AnalysisRow, AnnotationRow, DetailAnalysis, LatestReview, ScanPatient, ScanRow } from './repository.js';

/** Builds signed and expiring links to stored files. */
export interface FileLinks {
  /** A link to a stored file of `scanId` (the scan is named, never read back from the key's layout). */
  file(key: string, scanId: string): string;
  report(scanId: string, reportId: string): string;
  /**
   * Says that links `file()` built earlier for the same user, kept in a view, are handed out
   * again by this answer: the audit trail records every link an answer carries (link.issue),
   * also when the view holding it was built for an earlier request (a kept list page).
   */
  handedOut(files: readonly KeptFileLink[]): void;
}

/** A file link as a kept view holds it: the stored file and its scan. */
export type KeptFileLink = readonly [key: string, scanId: string];

/** Signed links on `base`, or relative paths when it is null; each for one user, refused once that user may no longer see the scan. */
export function fileLinks(signer: UrlSigner, base: string | null, userId: string): FileLinks {
  return {
    file: (key) => signer.sign(`/files/${key}`, base, { userId }),
    report: (scanId, reportId) => signer.sign(`/reports/report-${scanId}-${reportId}.pdf`, base, { userId }),
    handedOut: () => undefined,
  };
}

export type { ResultView };

/** The fields a physician's review may set (every scan type's); the rest describes the analysis. */
export const REVIEW_FIELDS = [
  ...SCAN_TYPE_IDS.flatMap((type) => {
    const { presence, kind, location } = scanTypeSpec(type).fields;
    return location ? [presence, kind, location] : [presence, kind];
  }),
  'confidence',
  'additionalNotes',
] as (keyof ReviewedFinding)[];

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/** The columns of an analysis that its result view shows (a list page reads only these). */
export type ShownAnalysis = Pick<AnalysisRow, 'scanId' | 'result' | 'modelId' | 'modelVersion' | 'heatmapKey' | 'hotRegion' | 'refusalReason'>;

/** The columns of a scan that a list shows. */
export type ListedScan = Pick<
  ScanRow,
  'id' | 'scanDate' | 'scanType' | 'imageKey' | 'thumbnailKey' | 'status' | 'currentAnalysisId' | 'failureReason' | 'createdAt'
>;

/** The model's finding from a completed analysis, in the API's shape; null when there is none. */
export function modelResultView(analysis: ShownAnalysis | null | undefined, links: FileLinks): ResultView | null {
  const finding = analysis?.result;
  if (!analysis || !finding) return null;
  const { presence, kind, location } = scanTypeSpec(finding.scanType).fields;
  const fields = finding as Record<string, unknown>;
  const modelId = finding.model?.id ?? analysis.modelId;
  const modelVersion = finding.model?.version ?? analysis.modelVersion;
  return {
    [presence]: fields[presence] === true,
    [kind]: str(fields[kind]),
    ...(location ? { [location]: str(fields[location]) } : {}),
    ...(typeof fields.decisionThreshold === 'number' ? { decisionThreshold: fields.decisionThreshold } : {}),
    confidence: finding.confidence ?? null,
    probabilities: finding.probabilities ?? {},
    model: modelId && modelVersion ? { id: modelId, version: modelVersion } : null,
    heatmapUrl: analysis.heatmapKey ? links.file(analysis.heatmapKey, analysis.scanId) : null,
    // How the answer was reached: the operating point and calibration in use, how the type was settled.
    ...(finding.operatingPoint ? { operatingPoint: finding.operatingPoint } : {}),
    ...(finding.calibration ? { calibration: finding.calibration } : {}),
    ...(finding.routing ? { routing: finding.routing } : {}),
    region: analysis.hotRegion ?? null,
  };
}

/** The reviewed fields of a stored review, laid over the model's result. */
export function reviewedResultView(model: ResultView | null, review: LatestReview | null | undefined): ResultView | null {
  if (!review) return model;
  const reviewed: ResultView = {};
  for (const field of REVIEW_FIELDS) {
    if (field in review.result) (reviewed as Record<string, unknown>)[field] = review.result[field];
  }
  if (!model && Object.keys(reviewed).length === 0) return null;
  return { ...(model ?? {}), ...reviewed };
}

export interface ScanViewInput {
  scan: ListedScan;
  patient: Pick<ScanPatient, 'patientId' | 'name'>;
  /** The current analysis: the latest one that finished. */
  analysis?: ShownAnalysis | null;
  /** The standing review (the latest), whichever analysis it judged. */
  review?: LatestReview | null;
  /** The analysis the standing review judged; the current one unless a newer one finished since. */
  reviewedAnalysis?: ShownAnalysis | null;
}

/**
 * What the reader acts on: the standing review laid over the model output it judged, else the
 * current model output. A newer analysis never replaces a physician's finding; it shows as
 * `modelResult`, flagged by `review.newerAnalysis`, until a physician reviews again.
 */
function currentResultView(input: ScanViewInput, links: FileLinks): ResultView | null {
  if (!input.review) return modelResultView(input.analysis, links);
  return reviewedResultView(modelResultView(input.reviewedAnalysis, links), input.review);
}

/** One review as the API shows it: who, when, what, and which analysis it judged. */
function reviewView(review: LatestReview, currentAnalysisId: string | null) {
  const result: Record<string, unknown> = {};
  for (const field of REVIEW_FIELDS) if (field in review.result) result[field] = review.result[field];
  return {
    _id: review.id,
    reviewedBy: review.reviewer ? { _id: review.reviewer.id, name: review.reviewer.name } : null,
    reviewedAt: review.reviewedAt.toISOString(),
    status: review.status,
    result: result as ResultView,
    analysisId: review.analysisId,
    newerAnalysis: currentAnalysisId !== null && review.analysisId !== currentAnalysisId,
  };
}

export function scanCoreView({ scan, patient }: ScanViewInput, links: FileLinks) {
  return {
    _id: scan.id,
    patientId: patient.patientId,
    patientName: patient.name,
    scanDate: scan.scanDate.toISOString(),
    scanType: scan.scanType,
    imageUrl: links.file(scan.imageKey, scan.id),
    thumbnailUrl: links.file(scan.thumbnailKey, scan.id),
    status: scan.status,
  };
}

function failureReason(scan: ListedScan, analysis: ShownAnalysis | null | undefined): string | null {
  if (scan.failureReason) return scan.failureReason;
  if (scan.status === 'failed') return analysis?.refusalReason ?? null;
  return null;
}

/**
 * The version of the finding a physician reviews: its standing review and the current analysis,
 * the two things a review builds on. The scan's ETag and `findingVersion`; a review sent with it
 * in If-Match is refused (412) once another review or a newer analysis changed the finding.
 */
export function findingVersion(reviewId: string | null | undefined, currentAnalysisId: string | null): string {
  return `${reviewId ?? 'unreviewed'}.${currentAnalysisId ?? 'unanalysed'}`;
}

/** A scan as the list shows it. */
export function scanView(input: ScanViewInput, links: FileLinks) {
  return {
    ...scanCoreView(input, links),
    result: currentResultView(input, links),
    review: input.review ? reviewView(input.review, input.scan.currentAnalysisId) : null,
    findingVersion: findingVersion(input.review?.id, input.scan.currentAnalysisId),
    failureReason: failureReason(input.scan, input.analysis),
    createdAt: input.scan.createdAt.toISOString(),
  };
}

export function annotationView(a: AnnotationRow) {
  return {
    _id: a.id,
    x: a.x,
    y: a.y,
    text: a.text,
    createdAt: a.createdAt.toISOString(),
    createdBy: a.authorId ? { _id: a.authorId, name: a.authorName ?? '' } : null,
  };
}

const dicomString = (info: Record<string, unknown> | null, key: string) => (info ? str(info[key]) : null);

/** Every analysis of the scan, oldest first: re-analysis never loses an earlier answer. */
function analysisHistoryView(rows: DetailAnalysis[], links: FileLinks) {
  return rows.map((a) => ({
    _id: a.id,
    status: a.status,
    scanType: a.scanType,
    model: a.modelId && a.modelVersion ? { id: a.modelId, version: a.modelVersion } : null,
    result: modelResultView(a, links),
    failureReason: a.refusalReason ?? a.error ?? null,
    requestedAt: a.createdAt.toISOString(),
    completedAt: a.completedAt ? a.completedAt.toISOString() : null,
  }));
}

/** A scan with everything GET /api/scans/:id shows. */
export function scanDetailView(
  input: ScanViewInput & {
    scan: ScanRow;
    patient: Pick<ScanPatient, 'id' | 'patientId' | 'name'>;
    analysis?: DetailAnalysis | null;
    doctor: { id: string; name: string; email: string } | null;
    annotations: AnnotationRow[];
    history: DetailAnalysis[];
    reviews: LatestReview[];
  },
  links: FileLinks,
) {
  const { scan, patient } = input;
  const modelResult = modelResultView(input.analysis, links);
  return {
    ...scanView(input, links),
    patient: { _id: patient.id, patientId: patient.patientId, name: patient.name },
    doctorId: input.doctor ? { _id: input.doctor.id, name: input.doctor.name, email: input.doctor.email } : null,
    modelResult,
    reviews: input.reviews.map((r) => reviewView(r, scan.currentAnalysisId)),
    annotations: input.annotations.map(annotationView),
    analysisHistory: analysisHistoryView(input.history, links),
    originalFormat: scan.originalFormat,
    width: scan.width,
    height: scan.height,
    dicom:
      scan.originalFormat === 'dicom'
        ? {
            modality: dicomString(scan.dicom, 'modality'),
            bodyPartExamined: dicomString(scan.dicom, 'bodyPartExamined'),
            studyInstanceUid: scan.studyInstanceUid,
            seriesInstanceUid: scan.seriesInstanceUid,
            sopInstanceUid: scan.sopInstanceUid,
          }
        : null,
    updatedAt: scan.updatedAt.toISOString(),
  };
}
