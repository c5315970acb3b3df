/**
 * Makes sure no scan stays "processing" forever. pg-boss retries a job whose worker died
 * (kill -9) once the job expires; but when the last try is lost that way, or a job vanished,
 * no handler runs again. This sweep finds such analyses and fails them with a reason.
 */
import type { Logger } from 'pino';
import type { Db } from '../platform/db/index.js';
import type { Queue } from '../platform/queue/index.js';
import type { EventPublisher } from '../webhooks/types.js';
import { ANALYZE_SCAN_JOB } from './job-name.js';
import { failAnalysis } from './outcome.js';
import * as repo from './repository.js';

async function reconcileOnce(deps: { db: Db; queue: Queue; events: EventPublisher; log: Logger }): Promise<number> {
  const { db, queue, events, log } = deps;
  const stale = await repo.unfinishedAnalyses(db, new Date(Date.now() - 60_000));
  let failed = 0;
  for (const analysis of stale) {
    const job = analysis.jobId ? await queue.jobState(ANALYZE_SCAN_JOB, analysis.jobId) : null;
    const lost = !job || job.state === 'failed' || job.state === 'cancelled' || job.state === 'completed';
    if (!lost) continue;
    const scan = await repo.findScanForAnalysis(db, analysis.scanId);
    if (!scan) continue;
    // failAnalysis only fails an analysis that is still unfinished, so one that finished since
    // the query above (or that another worker's sweep got to first) is left as it is.
    const failedNow = await failAnalysis(db, events, {
      analysisId: analysis.id,
      scanId: scan.id,
      patientId: scan.patientId,
      reason: 'Analysis did not finish (the worker stopped during every attempt); request it again',
      refused: false,
    });
    if (!failedNow) continue;
    log.warn({ analysisId: analysis.id, jobState: job?.state ?? 'missing' }, 'failed an analysis whose job was lost');
    failed++;
  }
  return failed;
}

export function startReconciler(deps: { db: Db; queue: Queue; events: EventPublisher; log: Logger }, everyMs = 30_000) {
  const timer = setInterval(() => {
    reconcileOnce(deps).catch((err: unknown) => deps.log.error({ err }, 'reconciler failed'));
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
