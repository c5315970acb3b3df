/**
 * The analysis job's view of src/ml: a pool of worker threads, each holding the ONNX sessions,
 * that turns a scan's display image (its PNG, its pixels when the worker has just rendered it,
 * or the JPEG or PNG original they are decoded from, in the thread) into what is stored
 * (result JSON, heatmap PNG, hot region) or a refusal. The event loop only passes messages,
 * so the API stays responsive while a worker in the same process analyses; the pool has as
 * many threads as analyses run at once.
 */
import { MessageChannel } from 'node:worker_threads';

import { Piscina } from 'piscina';

import { PermanentJobError } from '../platform/queue/index.js';
import type { AnalysisStage, Analyzer } from './analyze.job.js';
import type { AnalysisTask, AnalysisTaskResult, warmUp as warmUpInThread } from './analyzer.thread.js';
import { siblingModuleUrl } from '../platform/threads.js';

export interface OnnxAnalyzer extends Analyzer {
  /** Starts every thread of the pool and loads its models, so no analysis waits for them. */
  warmUp(): Promise<void>;
  close(): Promise<void>;
}

export interface OnnxAnalyzerOptions {
  modelsDir: string;
  /** Site calibrations (`<id>.site.json` from npm run calibrate); null for none. */
  calibrationDir?: string | null;
  /** Operating point per model id, e.g. { 'chest-xray': 'balanced' } (CHEST_OPERATING_POINT). */
  operatingPoints?: Record<string, string>;
  /** Analyses run at once (one thread each, one ONNX intra-op thread per analysis). */
  threads: number;
  /** Decompression-bomb guard for the stored PNG (config.maxImagePixels). */
  maxPixels?: number;
}

/** The header attributes routing reads, from the scan's stored DICOM summary. */
function dicomAttributes(dicom: Record<string, unknown> | null | undefined) {
  if (!dicom) return null;
  const text = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return { modality: text(dicom.modality), bodyPartExamined: text(dicom.bodyPartExamined) };
}

export function createOnnxAnalyzer({
  modelsDir,
  calibrationDir = null,
  operatingPoints = {},
  threads,
  maxPixels,
}: OnnxAnalyzerOptions): OnnxAnalyzer {
  const maxThreads = Math.max(1, threads);
  const pool = new Piscina<AnalysisTask | Parameters<typeof warmUpInThread>[0], AnalysisTaskResult | undefined>({
    filename: siblingModuleUrl(import.meta.url, 'analyzer.thread'),
    minThreads: 0,
    maxThreads,
    // Threads keep their loaded models while analyses keep coming.
    idleTimeout: 10 * 60_000,
  });
  return {
    async analyze(scanType, image, onStage, context) {
      const { port1, port2 } = new MessageChannel();
      // Stage updates are database writes: run them in order, never failing the analysis.
      let reported: Promise<void> = Promise.resolve();
      port1.on('message', (stage: AnalysisStage) => {
        reported = reported.then(() => onStage(stage)).catch(() => undefined);
      });
      // A copy the thread may own: moved to it, not cloned on this event loop. (The pixels of a
      // render may be shared with another reader of that render: they are copied too.)
      const bytes = new Uint8Array('png' in image ? image.png : 'original' in image ? image.original : image.pixels.data);
      const input: AnalysisTask['image'] =
        'png' in image ? { png: bytes } : 'original' in image ? { original: bytes } : { pixels: { ...image.pixels, data: bytes } };
      let outcome: AnalysisTaskResult;
      try {
        // The default export answers an analysis task (the warm-up, below, is the named one).
        outcome = (await pool.run(
          {
            modelsDir,
            calibrationDir,
            operatingPoints,
            scanType,
            dicom: dicomAttributes(context?.dicom),
            image: input,
            maxPixels,
            progress: port2,
          },
          { transferList: [port2, bytes.buffer] },
        )) as AnalysisTaskResult;
      } finally {
        port1.close();
        await reported;
      }
      if (!outcome.ok) {
        if (outcome.permanent) throw new PermanentJobError(outcome.message);
        throw new Error(outcome.message);
      }
      return outcome.output;
    },
    async warmUp() {
      // One task per thread at once: a busy thread makes the pool start the next one.
      const task: Parameters<typeof warmUpInThread>[0] = { modelsDir, calibrationDir, operatingPoints };
      await Promise.all(Array.from({ length: maxThreads }, () => pool.run(task, { name: 'warmUp' })));
    },
    close: () => pool.destroy(),
  };
}
