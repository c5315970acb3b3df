/** How an analysis's stages reach the database: few writes, none late, none out of order. */

/**
 * A stage is written at most this often. A whole analysis takes tens of milliseconds, so
 * writing every stage cost five statements per scan on the event loop for stages nobody
 * could see; a stage that lasts longer than this is still shown, on time.
 */
const PROGRESS_WRITE_INTERVAL_MS = 250;

/**
 * Progress writes for one analysis: the first stage reported after a quiet interval is written
 * at once; stages reported sooner wait for the interval's end, and only the newest of them is
 * written then. Writes run one after another and never fail the analysis.
 */
export function throttledProgress<Stage>(write: (stage: Stage) => Promise<void>, intervalMs = PROGRESS_WRITE_INTERVAL_MS) {
  // Made just after the first stage was written (by the claim).
  let lastWrite = Date.now();
  let pending: Stage | null = null;
  let timer: NodeJS.Timeout | null = null;
  let writing: Promise<void> = Promise.resolve();
  const flush = () => {
    timer = null;
    if (pending === null) return;
    const stage = pending;
    pending = null;
    lastWrite = Date.now();
    writing = writing.then(() => write(stage)).catch(() => undefined);
  };
  return {
    report(stage: Stage) {
      pending = stage;
      const wait = lastWrite + intervalMs - Date.now();
      if (wait <= 0) flush();
      else timer ??= setTimeout(flush, wait);
    },
    /** Drops the stages not yet written (the final write follows) and waits for the one being written. */
    async settle() {
      if (timer) clearTimeout(timer);
      timer = null;
      pending = null;
      await writing;
    },
  };
}
