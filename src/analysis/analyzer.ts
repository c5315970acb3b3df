/**
 * The analysis job's view of src/ml: pick the model for the scan type, run it, and turn its
 * answer into what is stored (result JSON, heatmap PNG, hot region) or a refusal.
 */
import { AppError } from '../platform/errors.js';
import { PermanentJobError } from '../platform/queue/index.js';
import { analyzeImage } from '../ml/inference.js';
import { ModelRegistry } from '../ml/registry.js';
import type { Analyzer } from './analyze.job.js';

export async function createOnnxAnalyzer(modelsDir: string): Promise<Analyzer> {
  const registry = await ModelRegistry.load({ dir: modelsDir, intraOpNumThreads: 1 });
  return {
    async analyze(scanType, png, onStage) {
      let model;
      try {
        model = registry.get(scanType);
      } catch (err) {
        if (err instanceof AppError) throw new PermanentJobError(err.message);
        throw err;
      }
      await onStage('preprocess');
      await onStage('inference');
      let analysis;
      try {
        analysis = await analyzeImage(model, png, { scanType, heatmap: true });
      } catch (err) {
        // An image that cannot be decoded will not decode on a retry either.
        if (err instanceof AppError) throw new PermanentJobError(err.message);
        throw err;
      }
      await onStage('explanation');
      const { result } = analysis;
      if (result.refused) return { refused: true, reason: result.reason, model: result.model };
      if (!analysis.heatmap || !analysis.hotRegion) {
        throw new Error('the model gave a finding without a heatmap');
      }
      const { refused: _refused, ...finding } = result;
      return {
        refused: false,
        model: result.model,
        result: finding as unknown as Record<string, unknown>,
        heatmapPng: analysis.heatmap.png,
        hotRegion: analysis.hotRegion,
      };
    },
  };
}
