/**
 * One analysis, run inside a worker thread of the pool in analyzer.ts. ONNX Runtime's Node
 * binding runs a session synchronously on the calling thread, and preprocessing and
 * the hot region are per-pixel loops: on the main thread they would stall every API request.
 * Each thread loads the models once and keeps them.
 */
import type { MessagePort } from 'node:worker_threads';

import type { DicomInfo } from '../imaging/dicom/info.js';
import { ImageDecodeError, undecodableImage } from '../imaging/errors.js';
import { decodeOriginalPixels } from '../imaging/index.js';
import { warmUpJpegDecoder } from '../imaging/jpeg.js';
import type { RawImage } from '../imaging/pixels.js';
import { analyzeScan } from '../ml/inference.js';
import { ModelRegistry, type ModelTask } from '../ml/registry.js';
import { PermanentAnalysisError } from '../ml/errors.js';
import type { AnalyzerOutput } from './analyze.job.js';

export interface AnalysisTask {
  modelsDir: string;
  /** Site calibrations (npm run calibrate); null for none. */
  calibrationDir: string | null;
  /** Operating point per model id (CHEST_OPERATING_POINT). */
  operatingPoints: Record<string, string>;
  /** Null: decide it from the DICOM header or the image. */
  scanType: ModelTask | null;
  dicom: Pick<DicomInfo, 'modality' | 'bodyPartExamined'> | null;
  /** The display PNG, its pixels (a render this worker just made), or a JPEG or PNG original to decode here. */
  image: { png: Uint8Array } | { pixels: RawImage } | { original: Uint8Array };
  maxPixels?: number;
  /** Receives each stage's name as it starts. */
  progress: MessagePort;
}

/** Errors do not keep their class across threads, so the outcome says what kind it was. */
export type AnalysisTaskResult =
  | { ok: true; output: AnalyzerOutput }
  | { ok: false; permanent: boolean; message: string };

const registries = new Map<string, Promise<ModelRegistry>>();

type RegistryOptions = Pick<AnalysisTask, 'modelsDir' | 'calibrationDir' | 'operatingPoints'>;

function registryFor(task: RegistryOptions): Promise<ModelRegistry> {
  const key = JSON.stringify([task.modelsDir, task.calibrationDir, task.operatingPoints]);
  let registry = registries.get(key);
  if (!registry) {
    registry = ModelRegistry.load({
      dir: task.modelsDir,
      intraOpNumThreads: 1,
      calibrationDir: task.calibrationDir,
      operatingPoints: task.operatingPoints,
    });
    // A failed load is not cached: the next analysis tries again (a model may have been fixed).
    registry.catch(() => registries.delete(key));
    registries.set(key, registry);
  }
  return registry;
}

/** Loads the models and the JPEG decoder into this thread ahead of its first analysis (run once per thread). */
export async function warmUp(task: RegistryOptions): Promise<void> {
  await Promise.all([registryFor(task), warmUpJpegDecoder()]);
}

export default async function analyzeInThread(task: AnalysisTask): Promise<AnalysisTaskResult> {
  try {
    const registry = await registryFor(task);
    const { image: given } = task;
    const asBuffer = (a: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    // An original is decoded here, in the thread that analyses it: one trip to the pool, and
    // the pixels stay on this thread (src/imaging/jpeg.ts for why not through sharp).
    const image =
      'png' in given
        ? asBuffer(given.png)
        : 'pixels' in given
          ? given.pixels
          : await decodeOriginalPixels(asBuffer(given.original), { maxPixels: task.maxPixels });
    const analysis = await analyzeScan(registry, image, {
      scanType: task.scanType,
      dicom: task.dicom,
      // The map is kept and the PNG drawn on the heatmap's first read (src/scans/heatmaps.ts): a
      // burst of analyses encodes and writes no heatmap nobody may look at.
      heatmap: false,
      maxPixels: task.maxPixels,
      onStage: (stage) => task.progress.postMessage(stage),
    });
    const { result } = analysis;
    if (result.refused) {
      return { ok: true, output: { refused: true, reason: result.reason, model: result.model, scanType: result.scanType } };
    }
    if (!analysis.heatmapMap || !analysis.hotRegion) throw new Error('the model gave a finding without a heatmap');
    const { refused: _refused, ...finding } = result;
    return {
      ok: true,
      output: {
        refused: false,
        scanType: result.scanType,
        model: result.model,
        result: finding,
        heatmapMap: analysis.heatmapMap,
        hotRegion: analysis.hotRegion,
      },
    };
  } catch (err) {
    // A missing model or an undecodable image will not get better on a retry.
    if (err instanceof PermanentAnalysisError) return { ok: false, permanent: true, message: err.message };
    // An original that cannot be decoded fails as the worker's own decode of it did (a time-out
    // on a busy machine is tried again).
    if (err instanceof ImageDecodeError) return { ok: false, ...undecodableImage(err) };
    return { ok: false, permanent: false, message: err instanceof Error ? err.message : String(err) };
  } finally {
    task.progress.close();
  }
}
