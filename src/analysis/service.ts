/** ML analysis requests and status, with the access check first (not yours = 404). */
import { requireVisibleScan, type Viewer } from '../access/index.js';
import type { AppContext } from '../context.js';
import { conflict } from '../platform/errors.js';
import { waitInWords } from '../platform/wait-in-words.js';
import { scanTypeSpec, type ScanType } from '../scan-types/index.js';
import * as repo from './repository.js';

export async function requestAnalysis(ctx: AppContext, { viewer, scanId, scanType }: { viewer: Viewer; scanId: string; scanType: ScanType }) {
  const { scan } = await requireVisibleScan(ctx.db, viewer, scanId);
  // A scan's type is fixed once known (analysed as it, or reviewed): the other model would only
  // corrupt its record. A declared type the model refused may still be corrected.
  if (scan.scanType !== null && scan.scanType !== scanType && (scan.status === 'completed' || (await repo.hasReview(ctx.db, scan.id)))) {
    const route = `/api/ml${scanTypeSpec(scan.scanType).analyzeRoute}`;
    throw conflict(`This scan is a ${scan.scanType} scan and cannot be analysed as ${scanType}; use POST ${route}`);
  }
  const out = await ctx.db.transaction((tx) => ctx.analysis.enqueue(tx, { scanId, scanType, requestedBy: viewer.id }));
  return { jobId: out.jobId, status: 'processing' as const, deduplicated: out.deduplicated };
}

/** Default when no analysis has finished yet on this server: a generous per-scan time. */
const DEFAULT_ANALYSIS_MS = 2000;

export async function analysisStatus(ctx: AppContext, { viewer, scanId, concurrency }: { viewer: Viewer; scanId: string; concurrency: number }) {
  const { scan } = await requireVisibleScan(ctx.db, viewer, scanId);
  const analysis = await repo.latestAnalysisOf(ctx.db, scan.id);
  if (!analysis) return { status: scan.status, progress: 0, estimatedCompletionTime: null, state: null, stage: null };
  const job = (await ctx.analysis.jobStatus(scan.id, analysis))!;
  let estimate: string | null = null;
  if (analysis.status === 'queued' || analysis.status === 'active') {
    const avgMs = (await repo.recentAverageDurationMs(ctx.db)) ?? DEFAULT_ANALYSIS_MS;
    const ahead = analysis.status === 'queued' ? await repo.countQueuedBefore(ctx.db, analysis.createdAt) : 0;
    const remainingOwn = avgMs * (1 - analysis.progress / 100);
    // The queue ahead drains at the pace analyses have recently been finishing, across every
    // worker process; before there is such a pace, at this process's own concurrency.
    const pace = (await repo.recentCompletionIntervalMs(ctx.db)) ?? avgMs / Math.max(1, concurrency);
    estimate = waitInWords((remainingOwn + ahead * pace) / 1000);
  }
  return {
    status: scan.status,
    progress: job.progress,
    estimatedCompletionTime: estimate,
    state: job.state,
    stage: job.stage,
  };
}
