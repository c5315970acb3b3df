/**
 * The sweep of what uploads cut off by a crash leave in storage: a streamed upload writes a
 * temporary file (local) or a multipart upload (S3) that becomes the scan's original only at
 * its end. A process killed in between leaves it behind; the upload's own clean-up never runs.
 * Each worker process asks for a sweep at start-up and then every interval; pg-boss's
 * throttled send turns the asks of N processes into one job per interval, and a sweep running
 * twice at once is harmless anyway (each leftover is removed once, the other finds it gone).
 * Only what nothing wrote to for PARTIAL_UPLOAD_AGE_MINUTES goes, so an upload in progress is
 * never touched. Local storage also looks in the per-scan folders of the layout before the
 * shard folders (`scans/<id>/`), where writes of that time left their `<file>.<uuid>.tmp`. An
 * S3 bucket lifecycle rule for incomplete multipart uploads stays the belt-and-braces
 * (docs/deployment.md).
 */
import { Type } from '@sinclair/typebox';
import type { Logger } from 'pino';
import type { JobDefinition, Queue } from '../platform/queue/index.js';
import { SweepUnsupportedError, type Storage } from '../platform/storage/index.js';
import { LEGACY_SCAN_FOLDERS } from './stored-files.js';

export const SWEEP_PARTIAL_UPLOADS_JOB = 'storage.sweep-partial-uploads';

export const SweepPartialUploadsPayloadSchema = Type.Object({});

export function sweepPartialUploadsJob(deps: {
  storage: Storage;
  /** Leftovers idle for less than this may belong to an upload still running: kept. */
  ageMinutes: number;
  now?: () => number;
}): JobDefinition<typeof SweepPartialUploadsPayloadSchema> {
  const now = deps.now ?? Date.now;
  return {
    name: SWEEP_PARTIAL_UPLOADS_JOB,
    payload: SweepPartialUploadsPayloadSchema,
    retryLimit: 2,
    retryDelaySeconds: 60,
    retryBackoff: true,
    expireInSeconds: 15 * 60,
    async handler(_data, { log }) {
      const olderThan = new Date(now() - deps.ageMinutes * 60_000);
      let removed: number;
      try {
        removed = await deps.storage.sweepPartialUploads(olderThan, LEGACY_SCAN_FOLDERS);
      } catch (err) {
        // Done for this interval, not failed: a retry would meet the same store.
        if (!(err instanceof SweepUnsupportedError)) throw err;
        log.warn({ reason: err.message }, 'partial uploads not swept');
        return;
      }
      log.info({ removed, olderThan: olderThan.toISOString() }, 'partial uploads swept');
    },
  };
}

/**
 * Asks for a sweep now and then every `intervalMinutes` (a quarter of it between asks, so no
 * window is missed); one job per window whatever the number of processes asking. Returns the stop.
 */
export function scheduleSweeps(opts: {
  queue: Pick<Queue, 'sendThrottled'>;
  /** This sweep or another with no payload (sweep-orphan-files.job.ts). */
  job: JobDefinition<typeof SweepPartialUploadsPayloadSchema>;
  intervalMinutes: number;
  log: Pick<Logger, 'warn'>;
}): () => void {
  const ask = () =>
    opts.queue
      .sendThrottled(opts.job, {}, { key: 'sweep', seconds: opts.intervalMinutes * 60 })
      .catch((err: unknown) => opts.log.warn({ job: opts.job.name, err: err instanceof Error ? err.message : String(err) }, 'could not ask for a sweep'));
  void ask();
  const timer = setInterval(() => void ask(), (opts.intervalMinutes * 60_000) / 4);
  timer.unref();
  return () => clearInterval(timer);
}
