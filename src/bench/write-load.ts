/**
 * The writes of a mixed benchmark (--write-rate N of bench:api and bench:big): N DICOM uploads
 * a second through the API, as a modality or a doctor's browser sends them, while autocannon
 * reads. Every upload commits a scan, its queued analysis and a job, which is what drops kept
 * list pages; a read figure without writes mostly measures the pages kept.
 *
 * Uploads start on a fixed clock (one every 1/N s), not one after another, so a slow server
 * does not lower the rate it is offered; at most MAX_IN_FLIGHT are open at once, and a tick
 * that finds them all busy is counted as skipped. The figures say what rate was achieved.
 */
import { MULTIPART, makeFiles, multipartBodies } from './dicom-files.js';
import { pct } from './support.js';

const MAX_IN_FLIGHT = 16;
/** Files built per batch (each batch: new UIDs and 20 new patients, assigned to the uploader). */
const BATCH = 100;

export interface WriteFigures {
  /** Uploads offered a second (--write-rate). */
  rate: number;
  /** Uploads answered 201 per second of the measured span. */
  achieved: number;
  uploads: number;
  failed: number;
  /** Ticks skipped because MAX_IN_FLIGHT uploads were still open. */
  skipped: number;
  p50: number;
  p99: number;
}

export interface WriteLoad {
  /** Starts a measured span: the figures of `stop` count from here. */
  mark(): void;
  /** Stops the writes, waits for the open ones, and returns the span's figures. */
  stop(): Promise<WriteFigures>;
}

/** One line for a results table: "5/s offered, 4.9/s done (0 failed, 0 skipped), upload p50 ..". */
export function describeWrites(w: WriteFigures): string {
  return `${w.rate}/s offered, ${w.achieved.toFixed(1)}/s done (${w.failed} failed, ${w.skipped} skipped), upload p50 ${Math.round(w.p50)} ms, p99 ${Math.round(w.p99)} ms`;
}

export function startWrites({ url, headers, rate }: { url: string; headers: Record<string, string>; rate: number }): WriteLoad {
  let bodies: Uint8Array<ArrayBuffer>[] = [];
  let since = performance.now();
  let uploads = 0;
  let failed = 0;
  let skipped = 0;
  let latencies: number[] = [];
  const open = new Set<Promise<void>>();

  const upload = async () => {
    if (bodies.length === 0) bodies = multipartBodies(makeFiles(BATCH));
    const body = bodies.pop()!;
    const t0 = performance.now();
    try {
      const res = await fetch(url, { method: 'POST', body, headers: { ...headers, 'content-type': MULTIPART } });
      await res.arrayBuffer();
      if (res.status === 201) {
        uploads++;
        latencies.push(performance.now() - t0);
      } else failed++;
    } catch {
      failed++;
    }
  };
  const timer = setInterval(() => {
    if (open.size >= MAX_IN_FLIGHT) {
      skipped++;
      return;
    }
    const p = upload().finally(() => open.delete(p));
    open.add(p);
  }, 1000 / rate);

  return {
    mark() {
      since = performance.now();
      uploads = failed = skipped = 0;
      latencies = [];
    },
    async stop() {
      clearInterval(timer);
      const seconds = (performance.now() - since) / 1000;
      const figures = { rate, achieved: uploads / seconds, uploads, failed, skipped, p50: pct(latencies, 50), p99: pct(latencies, 99) };
      await Promise.all(open);
      return figures;
    },
  };
}
