import type { DbOrTx } from '../platform/db/index.js';
import type { ScanType } from '../scan-types/index.js';

/** The API's job states: waiting (queued, or waiting to be retried), active, completed, failed. */
export type JobState = 'waiting' | 'active' | 'completed' | 'failed';

export interface JobStatus {
  state: JobState;
  progress: number;
  stage: string | null;
}

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
      /** The scan was inserted in this transaction with status `processing` (an upload). */
      newScan?: boolean;
    },
  ): Promise<{ jobId: string; analysisId: string; deduplicated: boolean }>;
  /** The latest job of a scan, or null when it never had one. */
  jobStatus(scanId: string): Promise<JobStatus | null>;
}
