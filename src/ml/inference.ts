/**
 * One image through one model: preprocessing, input checks, the ONNX forward pass (async, off
 * the main thread), calibrated probabilities, the task's decision rule, the out-of-
 * distribution refusal and the heatmap.
 */
import { performance } from 'node:perf_hooks';

import * as ort from 'onnxruntime-node';

import { explainClass, tumorLocation, type Heatmap, type HeatmapMap, type HotRegion } from './heatmap.js';
import { preprocessImage, type PreprocessedImage, type PreprocessingSpec } from './preprocess.js';
import {
  checkDistance,
  checkInput,
  checkShape,
  imageStats,
  type ImageStats,
  type InputCheckThresholds,
  type RefusalCheck,
} from './refusal.js';
import { listInWords, SCAN_TYPE_IDS, scanTypeSpec, type Finding } from '../scan-types/index.js';
import { checkOrientation } from './orientation.js';
import type { LoadedModel, ModelTask } from './registry.js';
import {
  dicomHint,
  decideScanType,
  routeImageTurns,
  SCAN_TYPE_NAME,
  turnedChest,
  turnedChestReason,
  turnPrepared,
  type Routing,
} from './routing.js';
import type { DicomInfo } from '../imaging/dicom/info.js';
import type { RawImage } from '../imaging/pixels.js';

interface ModelRef {
  id: string;
  version: string;
}

interface RefusedResult {
  refused: true;
  /** The type it was analysed as; null when the type could not be settled (neither, or a header refusal). */
  scanType: ModelTask | null;
  /** Why no diagnosis was given, in words for the user. */
  reason: string;
  check: RefusalCheck | 'scan_type';
  /** Null when refused before any model ran (scan type). */
  model: ModelRef | null;
  routing?: Routing;
}

/** A finding (its scan type's shape, src/scan-types) or a refusal. */
export type AnalysisResult = (Finding & { refused: false }) | RefusedResult;

export interface ModelOutputs {
  logits: Float32Array;
  features: Float32Array;
  /** [K, camHeight, camWidth] class activation maps. */
  cam: Float32Array;
  camWidth: number;
  camHeight: number;
  oodDistance: number;
}

export interface Analysis {
  result: AnalysisResult;
  /** The class activation map over the image; null when refused or not asked for. */
  heatmap: Heatmap | null;
  /** The normalised map of the explained class, the heatmap drawn without its image; null when refused. */
  heatmapMap: HeatmapMap | null;
  /** Hottest region of that map in pixels of the image given; null when refused. */
  hotRegion: HotRegion | null;
  /** Raw scores for evaluation and audit; null when an input check refused before the model. */
  scores: { logits: number[]; probabilities: number[]; oodDistance: number } | null;
  inputStats: ImageStats;
  timings: { modelMs: number | null; totalMs: number };
}

export interface AnalyzeOptions {
  /** The scan's declared type; must be the model's task. */
  scanType: ModelTask;
  /** Render the heatmap PNG (default true). */
  heatmap?: boolean;
  /** Decompression-bomb guard passed to the decoder. */
  maxPixels?: number;
  inputThresholds?: InputCheckThresholds;
  /** Called as each stage starts, so a caller can report progress. */
  onStage?: (stage: 'preprocess' | 'inference' | 'explanation') => void;
  /** The image already preprocessed with this model's spec (routing did it), to skip doing it again. */
  prepared?: PreprocessedImage;
}

const round4 = (v: number) => Math.round(v * 10_000) / 10_000;

/** softmax(logits / T), in float64. */
export function calibratedProbabilities(logits: ArrayLike<number>, temperature: number): number[] {
  const scaled = Array.from(logits, (v) => v / temperature);
  const max = Math.max(...scaled);
  const exps = scaled.map((v) => Math.exp(v - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / total);
}

/** One forward pass for one preprocessed image. */
export async function runModel(model: LoadedModel, tensor: Float32Array): Promise<ModelOutputs> {
  const { input } = model.manifest;
  const feeds = { [input.name]: new ort.Tensor('float32', tensor, [1, 1, input.height, input.width]) };
  const out = await model.session.run(feeds);
  const get = (name: string) => {
    const t = out[name];
    if (!t) throw new Error(`model ${model.id} has no output "${name}"`);
    return t;
  };
  const cam = get('cam');
  const dims = cam.dims;
  const distance = get('ood_distance').data as Float32Array;
  return {
    logits: get('logits').data as Float32Array,
    features: get('features').data as Float32Array,
    cam: cam.data as Float32Array,
    camHeight: Number(dims[2]),
    camWidth: Number(dims[3]),
    oodDistance: distance[0]!,
  };
}

interface Decided {
  finding: Finding;
  /** The class whose activation map explains the finding. */
  explainedClass: number;
}

/** The scan type's decision rule (src/scan-types) on calibrated probabilities, as a finding. */
function decide(model: LoadedModel, probs: number[]): Decided {
  const { labels, task, version } = model.manifest;
  const spec = scanTypeSpec(task);
  const byLabel: Record<string, number> = {};
  labels.forEach((l, i) => (byLabel[l] = probs[i]!));
  const d = spec.decide(byLabel, model.calibration.threshold);
  const probabilities: Record<string, number> = {};
  for (const l of spec.labels) probabilities[l] = round4(byLabel[l]!);
  const finding = {
    scanType: task,
    [spec.fields.presence]: d.present,
    [spec.fields.kind]: d.kind,
    confidence: round4(d.confidence),
    probabilities,
    ...(spec.fields.location ? { [spec.fields.location]: null } : {}),
    ...d.extra,
    operatingPoint: model.calibration.operatingPoint,
    calibration: model.calibration.source,
    model: { id: model.id, version },
  } as Finding;
  return { finding, explainedClass: labels.indexOf(d.explainedLabel) };
}

/** Whether the finding is positive (a tumour, pneumonia). */
function present(finding: Finding): boolean {
  return (finding as Record<string, unknown>)[scanTypeSpec(finding.scanType).fields.presence] === true;
}

/**
 * Analyse one image file (PNG or JPEG), or its decoded pixels, with one model. Throws
 * PermanentAnalysisError('unreadable_image') when the file cannot be decoded; a readable image
 * the model should not judge is a refusal, not an error.
 */
export async function analyzeImage(model: LoadedModel, image: Buffer | RawImage, options: AnalyzeOptions): Promise<Analysis> {
  const start = performance.now();
  const { manifest } = model;
  if (options.scanType !== manifest.task) {
    throw new Error(`model ${model.id} analyses ${manifest.task} scans, not ${options.scanType}`);
  }
  const modelRef = { id: model.id, version: manifest.version };
  options.onStage?.('preprocess');
  const prepared = options.prepared ?? (await preprocessImage(image, manifest.preprocessing, { maxPixels: options.maxPixels }));
  const stats = imageStats(prepared.rgb, prepared.width, prepared.height, prepared.channelSums);

  const inputRefusal =
    checkShape(prepared.source.width, prepared.source.height, manifest.task) ?? checkInput(stats, manifest.task, options.inputThresholds);
  if (inputRefusal) {
    return {
      result: { refused: true, scanType: manifest.task, ...inputRefusal, model: modelRef },
      heatmap: null,
      heatmapMap: null,
      hotRegion: null,
      scores: null,
      inputStats: stats,
      timings: { modelMs: null, totalMs: performance.now() - start },
    };
  }

  options.onStage?.('inference');
  const t0 = performance.now();
  const out = await runModel(model, prepared.tensor);
  const modelMs = performance.now() - t0;
  const probabilities = calibratedProbabilities(out.logits, model.calibration.temperature);
  const scores = { logits: Array.from(out.logits), probabilities, oodDistance: out.oodDistance };

  // Orientation after the distance: only an image the model takes for its kind of scan is
  // told it is turned (a document is not "rotated"; a chest X-ray turned 90 degrees is already
  // out of distribution).
  const modelRefusal =
    checkDistance(out.oodDistance, manifest.refusal.oodThreshold, manifest.task) ?? (await checkOrientation(prepared, manifest.task));
  if (modelRefusal) {
    return {
      result: { refused: true, scanType: manifest.task, ...modelRefusal, model: modelRef },
      heatmap: null,
      heatmapMap: null,
      hotRegion: null,
      scores,
      inputStats: stats,
      timings: { modelMs, totalMs: performance.now() - start },
    };
  }

  const { finding, explainedClass } = decide(model, probabilities);
  options.onStage?.('explanation');
  const { heatmap, map, hotRegion } = await explainClass(
    out.cam,
    explainedClass,
    out.camWidth,
    out.camHeight,
    prepared.source,
    { render: options.heatmap !== false },
  );
  const { location } = scanTypeSpec(manifest.task).fields;
  if (location && present(finding) && hotRegion) {
    (finding as Record<string, unknown>)[location] = tumorLocation(hotRegion, prepared.source.width, prepared.source.height);
  }
  return {
    result: { refused: false, ...finding },
    heatmap,
    heatmapMap: map,
    hotRegion,
    scores,
    inputStats: stats,
    timings: { modelMs, totalMs: performance.now() - start },
  };
}

/** Both specs give the same pixels and tensor (the router's is the shared 224 px spec). */
function sameSpec(a: PreprocessingSpec, b: PreprocessingSpec): boolean {
  return a.width === b.width && a.height === b.height && a.resize === b.resize && a.mean === b.mean && a.std === b.std;
}

export interface ScanAnalyzeOptions extends Omit<AnalyzeOptions, 'scanType' | 'prepared'> {
  /** The type the uploader or the analyze endpoint named; null to decide it. */
  scanType: ModelTask | null;
  /** The scan's DICOM attributes, when it came as DICOM (Modality and Body Part Examined are used). */
  dicom?: Pick<DicomInfo, 'modality' | 'bodyPartExamined'> | null;
}

/**
 * Analyse a scan as served: settle its type (declared, DICOM header, or the image; see
 * routing.ts), refuse a declared type the image contradicts, then run that model. The result
 * carries `routing`, how the type was settled.
 */
export async function analyzeScan(
  models: { get(id: ModelTask): LoadedModel },
  image: Buffer | RawImage,
  options: ScanAnalyzeOptions,
): Promise<Analysis> {
  const start = performance.now();
  const refuse = (reason: string, scanType: ModelTask | null, routing?: Routing, stats?: ImageStats): Analysis => ({
    result: { refused: true, scanType, reason, check: 'scan_type', model: null, ...(routing ? { routing } : {}) },
    heatmap: null,
      heatmapMap: null,
    hotRegion: null,
    scores: null,
    inputStats: stats ?? { grayStd: 0, meanChroma: 0, colourfulFraction: 0, highFrequencyRatio: 0 },
    timings: { modelMs: null, totalMs: performance.now() - start },
  });

  let declared: { scanType: ModelTask; source: 'declared' | 'dicom'; detail?: string } | null = null;
  if (options.scanType) declared = { scanType: options.scanType, source: 'declared' };
  else {
    const hint = dicomHint(options.dicom);
    if (hint.kind === 'refuse') return refuse(hint.reason, null);
    if (hint.kind === 'type') declared = { scanType: hint.scanType, source: 'dicom', detail: hint.detail };
  }

  // One decode and resize for routing and the model (both use the shared 224 px spec).
  const first = models.get(declared?.scanType ?? SCAN_TYPE_IDS[0]);
  options.onStage?.('preprocess');
  const prepared = await preprocessImage(image, first.manifest.preprocessing, { maxPixels: options.maxPixels });
  const routes = routeImageTurns(prepared, prepared.width, prepared.height);
  const decision = decideScanType(routes.asGiven, declared);
  if (!decision.ok) return refuse(decision.reason, decision.scanType);
  const { routing } = decision;
  // Most chest X-rays turned 90 degrees look more like a brain MRI to the router, and the brain
  // model answered a few. Sent without a type, one that the chest model takes for a chest X-ray
  // once turned back is refused as turned instead (never turned for the uploader, never answered).
  const turn = routing.source === 'image' ? turnedChest(prepared, routes, routing.scanType) : null;
  const chest = turn ? models.get('chest-xray') : null;
  if (turn && chest && sameSpec(chest.manifest.preprocessing, first.manifest.preprocessing)) {
    const back = await analyzeImage(chest, image, {
      ...options,
      scanType: 'chest-xray',
      heatmap: false,
      prepared: turnPrepared(prepared, !turn.clockwise),
      onStage: (stage) => {
        if (stage === 'inference') options.onStage?.(stage);
      },
    });
    if (!back.result.refused) {
      return {
        result: {
          refused: true,
          scanType: 'chest-xray',
          reason: turnedChestReason(turn),
          check: 'orientation',
          model: { id: chest.id, version: chest.manifest.version },
          routing: { source: 'image', scanType: 'chest-xray', probability: round4(turn.probability), detail: 'turned back a quarter turn' },
        },
        heatmap: null,
        heatmapMap: null,
        hotRegion: null,
        scores: back.scores,
        inputStats: back.inputStats,
        timings: { modelMs: back.timings.modelMs, totalMs: performance.now() - start },
      };
    }
  }

  const model = models.get(routing.scanType);
  const reuse = sameSpec(model.manifest.preprocessing, first.manifest.preprocessing);
  const analysis = await analyzeImage(model, image, {
    ...options,
    scanType: routing.scanType,
    prepared: reuse ? prepared : undefined,
    onStage: (stage) => {
      if (stage !== 'preprocess') options.onStage?.(stage);
    },
  });
  const result = analysis.result;
  result.routing = routing;
  if (result.refused && routing.source === 'image' && result.check !== 'orientation') {
    // The image picked the model and that model does not recognise it: most likely neither
    // kind of scan, so the type stays unknown rather than guessed. (An orientation refusal
    // comes only after the model took the image for its kind, so its type and reason stand.)
    result.scanType = null;
    result.reason =
      `This image was not recognised as ${listInWords(SCAN_TYPE_IDS.map((t) => `a ${SCAN_TYPE_NAME(t)}`), 'or')} ` +
      `(it was tried as a ${SCAN_TYPE_NAME(routing.scanType)}, ${SCAN_TYPE_IDS.length === 2 ? 'the closer of the two' : 'the closest of them'}). ` +
      `${result.reason} If it is one of them, upload it again with its scan type chosen ("Scan type" on the upload page, scanType in the API).`;
  }
  analysis.timings.totalMs = performance.now() - start;
  return analysis;
}
