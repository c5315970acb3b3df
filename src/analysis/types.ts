import type { DbOrTx } from '../platform/db/index.js';
import type { JobRecord } from '../platform/queue/index.js';
import type { analyses } from '../platform/db/schema.js';
import type { ScanType } from '../scan-types/index.js';

/** An analysis row as it is first written. */
export type NewAnalysisRow = typeof analyses.$inferInsert;

/** The API's job states: waiting (queued, or waiting to be retried), active, completed, failed. */
export type JobState = 'waiting' | 'active' | 'completed' | 'failed';

export interface JobStatus {
  state: JobState;
  progress: number;
  stage: string | null;
}

/** What the job status is made of: the latest analysis row of a scan. */
export type LatestAnalysis = { status: 'queued' | 'active' | 'completed' | 'failed'; stage: string | null; progress: number; jobId: string | null };

/** The analysis queue as the scans feature sees it. */
export interface AnalysisQueue {
  /**
   * Queues an analysis inside the caller's transaction, so the scan row and its job commit
   * together. A second request while one is queued or running returns that one.
   */
  enqueue(
    tx: DbOrTx,
    /** scanType null: the analysis decides it from the DICOM header or the image. */
    job: {
      scanId: string;
      scanType: ScanType | null;
      requestedBy: string | null;
    },
  ): Promise<{ jobId: string; analysisId: string; deduplicated: boolean }>;
  /**
   * Queues the first analysis of a scan that `insertScan` inserts, with status `processing`,
   * in the caller's transaction: it writes the scan row and the analysis row it is handed in
   * one statement (an upload's hottest path), then the job is queued.
   */
  enqueueNewScan<T>(
    tx: DbOrTx,
    job: { scanId: string; scanType: ScanType | null; requestedBy: string | null },
    insertScan: (analysis: NewAnalysisRow) => Promise<T>,
  ): Promise<T>;
  /**
   * The first analysis of a new scan for a statement that inserts the scan, its analysis row
   * and its job itself (an upload's one statement): the analysis row to write and its job as
   * a pg-boss record (platform/queue insertJobsSql), both naming each other.
   */
  newScanAnalysis(job: { scanId: string; scanType: ScanType | null; requestedBy: string | null }): {
    analysis: NewAnalysisRow & { id: string; jobId: string; status: 'queued'; progress: number };
    job: JobRecord;
  };
  /**
   * The latest job of a scan, or null when it never had one. `latest`: the scan's latest
   * analysis when the caller has read it already (a round trip fewer; the queue is then asked
   * only while the job is unfinished).
   */
  jobStatus(scanId: string, latest?: LatestAnalysis | null): Promise<JobStatus | null>;
}
