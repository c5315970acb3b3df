/**
 * The printable report of a scan: gathers what the reader needs (patient, scan, the finding
 * after review and the model's original, the image with annotations, the heatmap), renders it
 * with src/reports/pdf.ts and stores it beside the scan's files.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { ImageDecodeError } from '../imaging/index.js';
import { StorageNotFoundError } from '../platform/storage/index.js';
import { renderReportPdf, reportTemplateDigest, type ReportInput } from '../reports/pdf.js';
import * as repo from './repository.js';
import { reportKey } from './stored-files.js';
import { requireVisibleScan, type Viewer } from '../access/index.js';
import type { AppContext } from '../context.js';
import type { ScanDeps } from './service.js';
import { listModelSummaries } from '../analysis/models.js';
import { lockScan } from '../analysis/repository.js';
import { notFound } from '../platform/errors.js';
import { findingSummary, SCAN_TYPE_IDS, scanTypeSpec, type ScanType } from '../scan-types/index.js';
import { modelResultView, reviewedResultView, type FileLinks, type ResultView } from './view.js';

/** The scan's type, or for a scan without one the type its reviewed finding speaks of. */
function typeOf(scanType: ScanType | null, result: ResultView): ScanType | undefined {
  const fields = result as Record<string, unknown>;
  return scanType ?? SCAN_TYPE_IDS.find((t) => typeof fields[scanTypeSpec(t).fields.presence] === 'boolean');
}

function finding(scanType: ScanType | null, result: ResultView | null): ReportInput['finding'] {
  if (!result) return null;
  const type = typeOf(scanType, result);
  const spec = type ? scanTypeSpec(type) : null;
  const location = spec?.fields.location;
  const noun = spec ? spec.noun.charAt(0).toUpperCase() + spec.noun.slice(1) : '';
  return {
    summary: findingSummary(result),
    confidence: result.confidence ?? null,
    ...(result.probabilities && Object.keys(result.probabilities).length > 0 ? { probabilities: result.probabilities } : {}),
    ...(spec && location
      ? { location: { label: `${noun} location`, value: ((result as Record<string, unknown>)[location] as string | null | undefined) ?? null } }
      : {}),
    additionalNotes: result.additionalNotes ?? null,
  };
}

/** The installed model's human name for the report; the id stands in when it is gone. */
async function modelName(modelsDir: string, id: string): Promise<string | undefined> {
  try {
    return (await listModelSummaries(modelsDir)).find((m) => m.id === id)?.name;
  } catch {
    return undefined;
  }
}

export async function generateReport(
  deps: ScanDeps & Pick<AppContext, 'heatmaps' | 'renditions'>,
  {
    viewer,
    id,
    links,
    log,
    now = new Date(),
  }: { viewer: Viewer & { name: string }; id: string; links: FileLinks; log: FastifyBaseLogger; now?: Date },
) {
  const { db, storage } = deps;
  const { scan, patient } = await requireVisibleScan(db, viewer, id);
  const [analyses, reviews, annotations, image] = await Promise.all([
    repo.currentAnalyses(db, [scan]),
    repo.latestReviews(db, [scan.id]),
    repo.annotationsOf(db, scan.id),
    // Rendered now when the upload stored only the original and no analysis rendered it yet.
    deps.renditions
      .read(scan, 'image')
      .catch((err: unknown) => {
        if (!(err instanceof StorageNotFoundError) && !(err instanceof ImageDecodeError)) throw err;
        // The rest of the report is still worth having; its image panel says the image is missing.
        log.error({ scanId: scan.id }, 'scan image missing from storage or not decodable; report made without it');
        return Buffer.alloc(0);
      }),
  ]);
  const current = analyses.get(scan.id) ?? null;
  const review = reviews.get(scan.id) ?? null;
  // A review stands over the analysis it judged; a newer analysis is reported beside it.
  const newer = review && current && review.analysisId !== current.id ? current : null;
  const analysis = newer
    ? ((await repo.analysesById(db, [review?.analysisId])).get(review?.analysisId ?? '') ?? null)
    : current;
  const modelResult = modelResultView(analysis, links);
  const result = reviewedResultView(modelResult, review);
  const newerResult = newer ? modelResultView(newer, links) : null;

  let heatmap: Buffer | null = null;
  if (analysis?.heatmapKey) {
    try {
      // Drawn from the analysis's map now when nobody has read the heatmap yet.
      heatmap = await deps.heatmaps.read(scan, analysis.heatmapKey, analysis.heatmapMap);
    } catch (err) {
      if (!(err instanceof StorageNotFoundError) && !(err instanceof ImageDecodeError)) throw err;
      log.warn({ scanId: scan.id, analysisId: analysis.id }, 'heatmap file missing or not drawable; report made without it');
    }
  }

  const dicom = scan.dicom;
  const input: ReportInput = {
    scan: {
      id: scan.id,
      scanType: scan.scanType,
      scanDate: scan.scanDate,
      uploadedAt: scan.createdAt,
      status: scan.status,
      modality: typeof dicom?.modality === 'string' ? dicom.modality : null,
      studyInstanceUid: scan.studyInstanceUid,
      originalFormat: scan.originalFormat,
    },
    patient: {
      patientId: patient.patientId,
      name: patient.name,
      dateOfBirth: patient.dateOfBirth ? new Date(`${patient.dateOfBirth}T00:00:00.000Z`) : null,
      gender: patient.gender,
    },
    image,
    heatmap,
    hotRegion: analysis?.hotRegion ?? null,
    annotations: annotations.map((a) => ({
      x: a.x,
      y: a.y,
      text: a.text,
      createdAt: a.createdAt,
      createdBy: a.authorName ? { name: a.authorName } : null,
    })),
    finding: finding(scan.scanType, result),
    model: modelResult?.model ? { ...modelResult.model, name: await modelName(deps.config.modelsDir, modelResult.model.id) } : null,
    modelFinding:
      review && modelResult ? { summary: findingSummary(modelResult), confidence: modelResult.confidence ?? null } : null,
    review: review
      ? {
          reviewer: review.reviewer
            ? { name: review.reviewer.name, email: review.reviewer.email }
            : { name: 'a former user (account removed)' },
          reviewedAt: review.reviewedAt,
          status: review.status,
        }
      : null,
    newerAnalysis: newer
      ? {
          summary: newerResult ? findingSummary(newerResult) : null,
          confidence: newerResult?.confidence ?? null,
          completedAt: newer.completedAt,
          model: newerResult?.model ?? null,
          refusalReason: newer.refusalReason ?? newer.error,
        }
      : null,
    refusalReason: newer ? null : (analysis?.refusalReason ?? (scan.status === 'failed' ? scan.failureReason : null)),
    generatedAt: now,
    generatedBy: { name: viewer.name },
  };

  // Reports are clinical records and are kept, but asking again when nothing has changed gets
  // the report already stored instead of another copy of it.
  const fingerprint = reportFingerprint(input);
  const unchanged = (stored: { id: string; createdAt: Date }) => ({
    created: false,
    body: {
      message: `Nothing has changed since the report generated at ${stored.createdAt.toISOString()}; that report is returned`,
      reportUrl: links.report(scan.id, stored.id),
    },
  });
  const latest = await repo.latestReport(db, scan.id);
  if (latest?.fingerprint === fingerprint) return unchanged(latest);

  const pdf = await renderReportPdf(input, { warn: (message) => log.warn(message) });
  const reportId = randomUUID();
  const key = reportKey(scan.id, reportId);
  const removeFile = () =>
    storage.delete(key).catch((cleanupErr: unknown) => log.error({ err: cleanupErr, key }, 'could not remove a report file'));
  await storage.put(key, pdf, 'application/pdf');
  let stored: { id: string; createdAt: Date } | null;
  try {
    // One scan's reports are stored one at a time, the check again inside: of identical requests
    // that crossed while rendering (a double click), one stores its report and the rest return it.
    stored = await db.transaction(async (tx) => {
      if (!(await lockScan(tx, scan.id))) throw notFound('Scan');
      const newest = await repo.latestReport(tx, scan.id);
      if (newest?.fingerprint === fingerprint) return newest;
      await repo.insertReport(tx, { id: reportId, scanId: scan.id, storageKey: key, fingerprint, createdBy: viewer.id });
      return null;
    });
  } catch (err) {
    // The scan was deleted meanwhile (or the database failed): keep no orphaned file.
    await removeFile();
    throw err;
  }
  if (stored) {
    await removeFile();
    return unchanged(stored);
  }
  return { created: true, body: { message: 'Report generated successfully', reportUrl: links.report(scan.id, reportId) } };
}

/**
 * Digest of everything the report would print except the time it was generated (the images by
 * their bytes), and of the renderer's code, so a changed layout makes a new report too.
 */
function reportFingerprint(input: ReportInput): string {
  const { generatedAt: _printedTime, image, heatmap, ...printed } = input;
  const digest = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
  return createHash('sha256')
    .update(reportTemplateDigest())
    .update(JSON.stringify({ ...printed, image: digest(image), heatmap: heatmap ? digest(heatmap) : null }))
    .digest('hex');
}
