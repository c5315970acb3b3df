/**
 * The installed models: every `<dir>/*.json` manifest written by ml/train.py with its `.onnx`
 * file. Each file is checked against the manifest's sha256 and gets one onnxruntime session,
 * created once at start-up and shared by every analysis.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import * as ort from 'onnxruntime-node';

import { PermanentAnalysisError } from './errors.js';
import { CalibrationError, readSiteCalibration, resolveCalibration } from './calibration.js';
import { isScanType, scanTypeSpec, type ScanType } from '../scan-types/index.js';
import { parsePreprocessingSpec, type PreprocessingSpec } from './preprocess.js';

/** A model's task is the scan type it analyses (src/scan-types). */
export type ModelTask = ScanType;

export const DEFAULT_MODELS_DIR = path.resolve(fileURLToPath(new URL('../../models', import.meta.url)));

/** Per-class and summary metrics as ml/common.py `metrics_report` writes them. */
export interface ManifestMetrics {
  accuracy: number;
  macroF1: number;
  auc: number;
  ece: number;
  n: number;
  perClass: Record<string, { precision: number; recall: number; f1: number; auc: number }>;
  confusionMatrix: number[][];
}

/** Sensitivity and specificity of pneumonia-vs-normal at one threshold, on one data set. */
export interface PointMetrics {
  sensitivity: number;
  specificity: number;
  accuracy?: number;
  n?: number;
}

/**
 * A named decision rule of a model. Chest: pneumonia when P(bacterial) + P(viral) >= threshold.
 * Brain: the most probable class (`rule: "argmax"`, no threshold).
 */
export interface OperatingPoint {
  threshold?: number;
  rule?: 'argmax';
  description?: string;
  /** How the threshold was chosen, in words (which data, which criterion). */
  chosenOn?: string;
  validation?: PointMetrics;
  external?: PointMetrics;
}

interface ManifestDecision {
  positiveLabels?: string[];
  /** The single threshold of manifests written before operating points (1.0.0). */
  positiveThreshold?: number;
  operatingPoints?: Record<string, OperatingPoint>;
  defaultOperatingPoint?: string;
}

/**
 * An ensemble graph's record of its members (written by scripts/ensemble-model.ts, read by
 * scripts/model-card.ts and ml/parity.py); serving does not read it.
 */
export interface EnsembleRecord {
  members: {
    version: string;
    sha256: string;
    seed: number | null;
    trainCount: number | null;
    validationCount: number | null;
    /** The weights' quantisation ("float" when none). */
    quantization: string;
    horizontalFlip: boolean;
    inputNorm: string;
  }[];
  combination: string;
  validationSplitFrom: string;
  command: string;
}

/** The fields of a manifest that serving relies on; the rest is kept as written. */
export interface ModelManifest {
  id: string;
  name: string;
  version: string;
  task: ModelTask;
  file: string;
  sha256: string;
  labels: string[];
  input: { name: string; width: number; height: number; channels: number };
  preprocessing: PreprocessingSpec;
  calibration: { method: string; temperature: number };
  refusal: { method: string; oodThreshold: number; quantileOfValidation?: number };
  decision: ManifestDecision;
  training?: Record<string, unknown>;
  metrics?: { validation?: ManifestMetrics; test?: ManifestMetrics };
  date?: string;
  ensemble?: EnsembleRecord;
}

/** What serving uses to turn logits into an answer: the manifest's or the site's. */
export interface EffectiveCalibration {
  /** "model": as shipped in the manifest; "site": from a site calibration (npm run calibrate). */
  source: 'model' | 'site';
  temperature: number;
  /** The operating point in use and its pneumonia threshold (chest), or the argmax rule (brain). */
  operatingPoint: string;
  threshold: number | null;
  /** Every point of the calibration in use (the site's points when calibrated there). */
  operatingPoints: Record<string, OperatingPoint>;
  /** Why a site calibration for this model file is not used (it lacks the point selected); null otherwise. */
  siteIgnored: string | null;
}

export interface LoadedModel {
  id: string;
  manifest: ModelManifest;
  session: ort.InferenceSession;
  calibration: EffectiveCalibration;
}

export interface ModelSummary {
  id: string;
  name: string;
  version: string;
  task: ModelTask;
  labels: string[];
  /** Held-out test metrics from training, or null when the manifest has none. */
  metrics: ManifestMetrics | null;
  calibration: 'model' | 'site';
  operatingPoint: string;
  operatingPoints: string[];
}

export interface RegistryOptions {
  /** Folder holding the manifests and ONNX files; defaults to `<repo>/models`. */
  dir?: string;
  /** Threads per session for one inference; 1 lets several workers run side by side. */
  intraOpNumThreads?: number;
  /** Load only these model ids (default: every manifest found). */
  only?: string[];
  /** Folder of site calibrations (`<id>.site.json`, written by npm run calibrate); none when absent. */
  calibrationDir?: string | null;
  /** Operating point per model id (CHEST_OPERATING_POINT for chest-xray); the manifest's default otherwise. */
  operatingPoints?: Partial<Record<string, string>>;
}

export class ModelLoadError extends Error {
  override name = 'ModelLoadError';
}

function fail(file: string, message: string): never {
  throw new ModelLoadError(`${file}: ${message}`);
}

/** Checks a parsed manifest has what serving needs, with a message naming what is wrong. */
export function parseManifest(raw: unknown, file = 'manifest'): ModelManifest {
  if (typeof raw !== 'object' || raw === null) fail(file, 'not a JSON object');
  const m = raw as Record<string, unknown>;
  const str = (key: string): string => {
    const v = m[key];
    if (typeof v !== 'string' || v === '') fail(file, `"${key}" must be a non-empty string`);
    return v;
  };
  const id = str('id');
  str('name');
  str('version');
  str('file');
  if (!/^[0-9a-f]{64}$/.test(str('sha256'))) fail(file, '"sha256" must be 64 hex digits');
  const task = str('task');
  if (!isScanType(task)) fail(file, `unknown task "${task}"`);
  const labels = m.labels;
  const spec = scanTypeSpec(task);
  const expected: readonly string[] = spec.labels;
  if (!Array.isArray(labels) || labels.length !== expected.length || !expected.every((l) => labels.includes(l))) {
    fail(file, `labels must be ${expected.join(', ')} for task ${task}`);
  }
  try {
    parsePreprocessingSpec(m.preprocessing);
  } catch (err) {
    fail(file, (err as Error).message);
  }
  const temperature = (m.calibration as { temperature?: unknown } | undefined)?.temperature;
  if (typeof temperature !== 'number' || !(temperature > 0)) fail(file, 'calibration.temperature must be > 0');
  const threshold = (m.refusal as { oodThreshold?: unknown } | undefined)?.oodThreshold;
  if (typeof threshold !== 'number' || !(threshold > 0)) fail(file, 'refusal.oodThreshold must be > 0');
  const input = m.input as { name?: unknown } | undefined;
  if (typeof input?.name !== 'string') fail(file, 'input.name must be a string');
  if (spec.needsPositiveThreshold) {
    const d = m.decision as { positiveThreshold?: unknown; positiveLabels?: unknown; operatingPoints?: unknown } | undefined;
    const isProbability = (v: unknown) => typeof v === 'number' && v > 0 && v < 1;
    if (d?.operatingPoints !== undefined) {
      const points = d.operatingPoints;
      if (typeof points !== 'object' || points === null || Object.keys(points).length === 0) {
        fail(file, 'decision.operatingPoints must name at least one point');
      }
      for (const [name, point] of Object.entries(points)) {
        if (!isProbability((point as { threshold?: unknown } | null)?.threshold)) {
          fail(file, `decision.operatingPoints.${name}.threshold must be between 0 and 1`);
        }
      }
    } else if (!isProbability(d?.positiveThreshold)) {
      fail(file, 'decision.positiveThreshold must be between 0 and 1');
    }
    if (!Array.isArray(d?.positiveLabels) || d.positiveLabels.some((l) => !labels.includes(l))) {
      fail(file, 'decision.positiveLabels must be labels of the model');
    }
  }
  if (!m.decision || typeof m.decision !== 'object') m.decision = {};
  if (id !== path.basename(file, '.json') && file !== 'manifest') {
    fail(file, `id "${id}" does not match the file name`);
  }
  return m as unknown as ModelManifest;
}

export class ModelRegistry {
  private constructor(private readonly models: Map<string, LoadedModel>) {}

  /** Loads and verifies every model; throws ModelLoadError naming the first bad file. */
  static async load(options: RegistryOptions = {}): Promise<ModelRegistry> {
    const dir = options.dir ?? DEFAULT_MODELS_DIR;
    const threads = options.intraOpNumThreads ?? 1;
    let names: string[];
    try {
      names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') names = [];
      else throw err;
    }
    const models = new Map<string, LoadedModel>();
    for (const name of names) {
      const id = path.basename(name, '.json');
      if (options.only && !options.only.includes(id)) continue;
      const manifestPath = path.join(dir, name);
      let raw: unknown;
      try {
        raw = JSON.parse(await readFile(manifestPath, 'utf8'));
      } catch (err) {
        fail(manifestPath, `cannot read manifest (${(err as Error).message})`);
      }
      const manifest = parseManifest(raw, manifestPath);
      const onnxPath = path.join(dir, manifest.file);
      let bytes: Buffer;
      try {
        bytes = await readFile(onnxPath);
      } catch (err) {
        fail(manifestPath, `cannot read ${manifest.file} (${(err as Error).message})`);
      }
      const digest = createHash('sha256').update(bytes).digest('hex');
      if (digest !== manifest.sha256) {
        fail(onnxPath, `sha256 ${digest} does not match the manifest (${manifest.sha256}); the model file is not the one trained`);
      }
      const session = await ort.InferenceSession.create(bytes, {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
        executionMode: 'sequential',
        graphOptimizationLevel: 'all',
      });
      let calibration: EffectiveCalibration;
      try {
        calibration = resolveCalibration(
          manifest,
          readSiteCalibration(options.calibrationDir, manifest),
          options.operatingPoints?.[manifest.id],
        );
      } catch (err) {
        await session.release();
        if (err instanceof CalibrationError) fail(manifestPath, err.message);
        throw err;
      }
      models.set(manifest.id, { id: manifest.id, manifest, session, calibration });
    }
    return new ModelRegistry(models);
  }

  list(): ModelSummary[] {
    return [...this.models.values()].map(({ manifest: m, calibration }) => ({
      id: m.id,
      name: m.name,
      version: m.version,
      task: m.task,
      labels: [...m.labels],
      metrics: m.metrics?.test ?? null,
      calibration: calibration.source,
      operatingPoint: calibration.operatingPoint,
      operatingPoints: Object.keys(calibration.operatingPoints),
    }));
  }

  has(id: string): boolean {
    return this.models.has(id);
  }

  /** The model; PermanentAnalysisError 'model_unavailable' when it is not installed on this server. */
  get(id: string): LoadedModel {
    const model = this.models.get(id);
    if (!model) throw new PermanentAnalysisError('model_unavailable', `The ${id} model is not installed on this server`);
    return model;
  }

  async close(): Promise<void> {
    await Promise.all([...this.models.values()].map((m) => m.session.release()));
    this.models.clear();
  }
}
