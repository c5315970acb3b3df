/**
 * The model runtime as one small adapter, for the job worker to inject: tests of the job
 * handler pass a fake `ImageAnalyzer`, production passes `createImageAnalyzer(...)`.
 */
import { analyzeImage, type Analysis } from './inference.js';
import { ModelRegistry, type ModelSummary, type ModelTask, type RegistryOptions } from './registry.js';

export interface ImageAnalyzer {
  /** Installed models with their versions and test metrics. */
  list(): ModelSummary[];
  /**
   * Analyse one PNG/JPEG with the model for `scanType`. Throws AppError 'unavailable' when
   * that model is not installed and 'unprocessable' when the bytes are not an image; a
   * readable image the model should not judge comes back as a refused result.
   */
  analyze(scanType: ModelTask, image: Buffer, options?: { heatmap?: boolean }): Promise<Analysis>;
  close(): Promise<void>;
}

export interface AnalyzerOptions extends RegistryOptions {
  /** Largest image, in pixels, the decoder accepts (config.maxImagePixels). */
  maxPixels?: number;
}

export async function createImageAnalyzer(options: AnalyzerOptions = {}): Promise<ImageAnalyzer> {
  const registry = await ModelRegistry.load(options);
  return {
    list: () => registry.list(),
    analyze: (scanType, image, opts = {}) =>
      analyzeImage(registry.get(scanType), image, { scanType, heatmap: opts.heatmap, maxPixels: options.maxPixels }),
    close: () => registry.close(),
  };
}
