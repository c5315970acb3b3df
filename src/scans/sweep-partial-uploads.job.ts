/**
 * The sweep of what uploads cut off by a crash leave in storage: a streamed upload writes a
 * temporary file (local) or a multipart upload (S3) that becomes the scan's original only at
 * its end. A process killed in between leaves it behind; the upload's own clean-up never runs.
 * Scheduled by scheduleSweeps (sweeps.ts), one job per interval.
 * Only what nothing wrote to for PARTIAL_UPLOAD_AGE_MINUTES goes, so an upload in progress is
 * never touched. Local storage also looks in the per-scan folders of the layout before the
 * shard folders (`scans/<id>/`), where writes of that time left their `<file>.<uuid>.tmp`. An
 * S3 bucket lifecycle rule for incomplete multipart uploads stays the belt-and-braces
 * (docs/deployment.md).
 */
import type { JobDefinition } from '../platform/queue/index.js';
import { SweepUnsupportedError, type Storage } from '../platform/storage/index.js';
import { LEGACY_SCAN_FOLDERS } from './stored-files.js';
import { sweepJob, type SweepPayloadSchema } from './sweeps.js';

export const SWEEP_PARTIAL_UPLOADS_JOB = 'storage.sweep-partial-uploads';

export function sweepPartialUploadsJob(deps: {
  storage: Storage;
  /** Leftovers idle for less than this may belong to an upload still running: kept. */
  ageMinutes: number;
  now?: () => number;
}): JobDefinition<typeof SweepPayloadSchema> {
  return sweepJob({
    name: SWEEP_PARTIAL_UPLOADS_JOB,
    ageMs: deps.ageMinutes * 60_000,
    now: deps.now,
    swept: 'partial uploads swept',
    async sweep(olderThan, log) {
      try {
        return await deps.storage.sweepPartialUploads(olderThan, LEGACY_SCAN_FOLDERS);
      } catch (err) {
        // Done for this interval, not failed: a retry would meet the same store.
        if (!(err instanceof SweepUnsupportedError)) throw err;
        log.warn({ reason: err.message }, 'partial uploads not swept');
        return null;
      }
    },
  });
}
