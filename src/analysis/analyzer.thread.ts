/**
 * One analysis, run inside a worker thread of the pool in analyzer.ts. ONNX Runtime's Node
 * binding runs a session synchronously on the calling thread, and preprocessing and the
 * heatmap are per-pixel loops: on the main thread they would stall every API request.
 * Each thread loads the models once and keeps them.
 */
import type { MessagePort } from 'node:worker_threads';

import { analyzeImage } from '../ml/inference.js';
import { ModelRegistry, type ModelTask } from '../ml/registry.js';
import { AppError } from '../platform/errors.js';
import type { AnalyzerOutput } from './analyze.job.js';

export interface AnalysisTask {
  modelsDir: string;
  scanType: ModelTask;
  png: Uint8Array;
  maxPixels?: number;
  /** Receives each stage's name as it starts. */
  progress: MessagePort;
}

/** Errors do not keep their class across threads, so the outcome says what kind it was. */
export type AnalysisTaskResult =
  | { ok: true; output: AnalyzerOutput }
  | { ok: false; permanent: boolean; message: string };

const registries = new Map<string, Promise<ModelRegistry>>();

function registryFor(dir: string): Promise<ModelRegistry> {
  let registry = registries.get(dir);
  if (!registry) {
    registry = ModelRegistry.load({ dir, intraOpNumThreads: 1 });
    // A failed load is not cached: the next analysis tries again (a model may have been fixed).
    registry.catch(() => registries.delete(dir));
    registries.set(dir, registry);
  }
  return registry;
}

export default async function analyzeInThread(task: AnalysisTask): Promise<AnalysisTaskResult> {
  try {
    const model = (await registryFor(task.modelsDir)).get(task.scanType);
    const image = Buffer.from(task.png.buffer, task.png.byteOffset, task.png.byteLength);
    const analysis = await analyzeImage(model, image, {
      scanType: task.scanType,
      heatmap: true,
      maxPixels: task.maxPixels,
      onStage: (stage) => task.progress.postMessage(stage),
    });
    const { result } = analysis;
    if (result.refused) return { ok: true, output: { refused: true, reason: result.reason, model: result.model } };
    if (!analysis.heatmap || !analysis.hotRegion) throw new Error('the model gave a finding without a heatmap');
    const { refused: _refused, ...finding } = result;
    return {
      ok: true,
      output: {
        refused: false,
        model: result.model,
        result: finding as unknown as Record<string, unknown>,
        heatmapPng: analysis.heatmap.png,
        hotRegion: analysis.hotRegion,
      },
    };
  } catch (err) {
    // A missing model or an undecodable image will not get better on a retry.
    if (err instanceof AppError) return { ok: false, permanent: true, message: err.message };
    return { ok: false, permanent: false, message: err instanceof Error ? err.message : String(err) };
  } finally {
    task.progress.close();
  }
}
