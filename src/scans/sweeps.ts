/**
 * What the storage sweeps (sweep-partial-uploads.job.ts, sweep-orphan-files.job.ts) have in
 * common: no payload, a cut-off before which what they find goes, the same retries and expiry,
 * one log line of what they removed, and their schedule: each worker process asks for a sweep
 * at start-up and then through the interval, and pg-boss's throttled send turns the asks of N
 * processes into one job per interval. Two sweeps at once are harmless anyway (each leftover is
 * removed once, the other finds it gone).
 */
import { Type } from '@sinclair/typebox';
import type { Logger } from 'pino';
import type { JobDefinition, Queue } from '../platform/queue/index.js';

export const SweepPayloadSchema = Type.Object({});

export function sweepJob(opts: {
  name: string;
  /** What nothing wrote to for this long is swept; anything younger may belong to work in progress. */
  ageMs: number;
  now?: () => number;
  /**
   * Removes what was last written before `olderThan`; the number removed, or null when this
   * interval's sweep is skipped (it logged why). A throw fails the job: pg-boss retries it.
   */
  sweep(olderThan: Date, log: Logger): Promise<number | null>;
  /** The log line of a sweep done, e.g. 'partial uploads swept'. */
  swept: string;
}): JobDefinition<typeof SweepPayloadSchema> {
  const now = opts.now ?? Date.now;
  return {
    name: opts.name,
    payload: SweepPayloadSchema,
    retryLimit: 2,
    retryDelaySeconds: 60,
    retryBackoff: true,
    expireInSeconds: 15 * 60,
    async handler(_data, { log }) {
      const olderThan = new Date(now() - opts.ageMs);
      const removed = await opts.sweep(olderThan, log);
      if (removed !== null) log.info({ removed, olderThan: olderThan.toISOString() }, opts.swept);
    },
  };
}

/**
 * Asks for a sweep now and then every `intervalMinutes` (a quarter of it between asks, so no
 * window is missed); one job per window whatever the number of processes asking. Returns the stop.
 */
export function scheduleSweeps(opts: {
  queue: Pick<Queue, 'sendThrottled'>;
  job: JobDefinition<typeof SweepPayloadSchema>;
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
