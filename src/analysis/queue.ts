/**
 * The analysis queue: an `analyses` row per requested analysis (the history of a scan) and a
 * pg-boss job that runs it. Both are written in the caller's transaction, so a scan can never
 * be committed without the job that will analyse it.
 */
import { randomUUID } from 'node:crypto';
import type { Db } from '../platform/db/index.js';
import { AppError } from '../platform/errors.js';
import { jobRecord, type Queue } from '../platform/queue/index.js';
import { ANALYZE_SCAN_JOB } from './job-name.js';
import * as repo from './repository.js';
import type { AnalysisQueue, JobState, JobStatus, LatestAnalysis } from './types.js';
import type { analyzeScanJob } from './analyze.job.js';

type AnalyzeJob = ReturnType<typeof analyzeScanJob>;

export function createAnalysisQueue(db: Db, queue: Queue, job: AnalyzeJob): AnalysisQueue {
  return {
    async enqueue(tx, { scanId, scanType, requestedBy }) {
      // Locking the scan row serialises concurrent requests for one scan: the second one sees
      // the first one's queued analysis and returns it instead of queueing another.
      await repo.lockScan(tx, scanId);
      const pending = await repo.pendingAnalysisOf(tx, scanId);
      if (pending?.jobId) {
        if (pending.scanType !== scanType) {
          const running = pending.scanType ? `as ${pending.scanType}` : 'with its type being decided from the image';
          throw new AppError(
            'conflict',
            `This scan is already being analysed ${running}; wait for that analysis to finish before requesting ${scanType ?? 'another analysis'}`,
          );
        }
        return { jobId: pending.jobId, analysisId: pending.id, deduplicated: true };
      }
      // Both ids chosen here, so the analysis row is written once, already naming its job.
      const analysisId = randomUUID();
      const jobId = randomUUID();
      await repo.insertAnalysis(tx, { id: analysisId, jobId, scanId, scanType, requestedBy, status: 'queued', progress: 0 });
      await queue.send(job, { scanId, analysisId }, { tx, id: jobId });
      // A type to be decided leaves the scan's type as it is until the analysis settles it.
      await repo.updateScan(tx, scanId, { status: 'processing', ...(scanType ? { scanType } : {}), failureReason: null });
      return { jobId, analysisId, deduplicated: false };
    },

    async enqueueNewScan(tx, { scanId, scanType, requestedBy }, insertScan) {
      // A scan inserted in this very transaction has no other analysis and is already
      // `processing`: no lock, no look-up, no scan update, and its analysis row is written by
      // the scan's own insert.
      const analysisId = randomUUID();
      const jobId = randomUUID();
      const inserted = await insertScan({ id: analysisId, jobId, scanId, scanType, requestedBy, status: 'queued', progress: 0 });
      await queue.send(job, { scanId, analysisId }, { tx, id: jobId });
      return inserted;
    },

    newScanAnalysis({ scanId, scanType, requestedBy }) {
      const analysisId = randomUUID();
      const jobId = randomUUID();
      return {
        analysis: { id: analysisId, jobId, scanId, scanType, requestedBy, status: 'queued', progress: 0 },
        job: jobRecord(job, { scanId, analysisId }, jobId),
      };
    },

    async jobStatus(scanId, latest) {
      const analysis = latest === undefined ? await repo.latestAnalysisOf(db, scanId) : latest;
      if (!analysis) return null;
      return statusOf(analysis, queue);
    },
  };
}

async function statusOf(analysis: LatestAnalysis, queue: Pick<Queue, 'jobState'>): Promise<JobStatus> {
  // A finished analysis, refused or failed as much as completed, is at 100 in no stage: a
  // poller waiting for progress 100 stops, and none shows a refused scan as stuck in `decode`.
  if (analysis.status === 'completed' || analysis.status === 'failed') return { state: analysis.status, progress: 100, stage: null };
  const stage = analysis.stage;
  // A try that failed and waits for its retry is waiting again, not active.
  let state: JobState = analysis.status === 'active' ? 'active' : 'waiting';
  if (analysis.jobId) {
    const job = await queue.jobState(ANALYZE_SCAN_JOB, analysis.jobId);
    if (job?.state === 'retry') state = 'waiting';
    else if (job?.state === 'active') state = 'active';
  }
  return { state, progress: analysis.progress, stage };
}
