/**
 * One analysis, run inside a worker thread of the pool in analyzer.ts. ONNX Runtime's Node
 * binding runs a session synchronously on the calling thread, and preprocessing and the
 * heatmap are per-pixel loops: on the main thread they would stall every API request.
 * Each thread loads the models once and keeps them.
 */
import type { MessagePort } from 'node:worker_threads';

import type { DicomInfo } from '../imaging/dicom/info.js';
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
  /** The display PNG, or its pixels (a render this worker just made). */
  image: { png: Uint8Array } | { pixels: RawImage };
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

/** Loads the models into this thread ahead of its first analysis (run once per thread). */
export async function warmUp(task: RegistryOptions): Promise<void> {
  await registryFor(task);
}

export default async function analyzeInThread(task: AnalysisTask): Promise<AnalysisTaskResult> {
  try {
    const registry = await registryFor(task);
    const { image: given } = task;
    const image = 'png' in given ? Buffer.from(given.png.buffer, given.png.byteOffset, given.png.byteLength) : given.pixels;
    const analysis = await analyzeScan(registry, image, {
      scanType: task.scanType,
      dicom: task.dicom,
      heatmap: true,
      maxPixels: task.maxPixels,
      onStage: (stage) => task.progress.postMessage(stage),
    });
    const { result } = analysis;
    if (result.refused) {
      return { ok: true, output: { refused: true, reason: result.reason, model: result.model, scanType: result.scanType } };
    }
    if (!analysis.heatmap || !analysis.hotRegion) throw new Error('the model gave a finding without a heatmap');
    const { refused: _refused, ...finding } = result;
    return {
      ok: true,
      output: {
        refused: false,
        scanType: result.scanType,
        model: result.model,
        result: finding,
        heatmapPng: analysis.heatmap.png,
        hotRegion: analysis.hotRegion,
      },
    };
  } catch (err) {
    // A missing model or an undecodable image will not get better on a retry.
    if (err instanceof PermanentAnalysisError) return { ok: false, permanent: true, message: err.message };
    return { ok: false, permanent: false, message: err instanceof Error ? err.message : String(err) };
  } finally {
    task.progress.close();
  }
}
