/**
 * Evaluation of one model on a folder of labelled images, through the same code path the
 * server uses (analyzeScan: scan-type check, then the model), so what is measured is what is served: decode, input checks,
 * model, calibration, decision rule, refusal.
 *
 * Folder layout: one subfolder per label of the model, plus an optional `reject/` of images
 * that must be refused (photos, documents, blank, noise, the other modality). A reject file's
 * category is its name up to the first '-' (e.g. `photo-007.png`).
 */
import { readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import * as ort from 'onnxruntime-node';

import { scanTypeSpec, type ScanType } from '../scan-types/index.js';
import { analyzeScan, type AnalysisResult } from './inference.js';
import {
  binaryAuc,
  binaryMetrics,
  confusionMatrix,
  expectedCalibrationError,
  mean,
  perClassMetrics,
  percentile,
  reliabilityBins,
  rocCurve,
  type BinaryMetrics,
  type ReliabilityBin,
} from './metrics.js';
import type { LoadedModel } from './registry.js';

const IMAGE_FILE = /\.(png|jpe?g)$/i;

export interface EvalOptions {
  /** At most this many images per folder (first by name), for quick runs. */
  limit?: number;
  /** Called after each image, for progress output. */
  onProgress?: (done: number, total: number) => void;
}

interface Count {
  n: number;
  refused: number;
}

export interface EvalReport {
  model: { id: string; version: string; sha256: string };
  dataDir: string;
  labels: string[];
  n: number;
  accuracy: number;
  macroF1: number;
  auc: number;
  ece: number;
  /** Share of reject/ images refused; null without a reject folder. */
  refusalRate: number | null;
  falseRefusalRate: number;
  latencyMsP50: number;
  latencyMsP95: number;
  modelLatencyMsP50: number;
  modelLatencyMsP95: number;
  perClass: Record<string, { precision: number; recall: number; f1: number; auc: number; support: number }>;
  confusionMatrix: number[][];
  refusedByClass: Record<string, number>;
  falseRefusalsByCheck: Record<string, number>;
  reject: { n: number; refused: number; byCategory: Record<string, Count>; byCheck: Record<string, number> } | null;
  binary?: BinaryMetrics;
  /** The decision rule and calibration this evaluation served with. */
  operatingPoint: string;
  calibration: 'model' | 'site';
  temperature: number;
  /** Chest: pneumonia-vs-normal at every named point of the model, refusals counted. */
  operatingPoints?: Record<string, { threshold: number; accuracy: number; sensitivity: number; specificity: number }>;
  /** For the model card's pictures: ROC (chest: pneumonia vs normal; brain: each class vs rest) and reliability bins. */
  curves: { roc: Record<string, [number, number][]>; reliability: ReliabilityBin[] };
  /** loadAverage: the 1-minute load when the evaluation ended; latency on a busy machine is not the model's. */
  machine: { cpu: string; cpus: number; node: string; onnxruntime: string; loadAverage?: number };
  date: string;
}

async function listImages(dir: string, limit?: number): Promise<string[]> {
  const names = (await readdir(dir)).filter((n) => IMAGE_FILE.test(n)).sort();
  return (limit ? names.slice(0, limit) : names).map((n) => path.join(dir, n));
}

/** The served 3-class answer as a label index, or -1 when refused. */
function servedPrediction(result: AnalysisResult, labels: readonly string[]): number {
  if (result.refused) return -1;
  const spec = scanTypeSpec(result.scanType);
  const kind = (result as Record<string, unknown>)[spec.fields.kind];
  return labels.indexOf(typeof kind === 'string' ? kind : spec.negativeLabel);
}

const r4 = (v: number) => (Number.isFinite(v) ? Math.round(v * 10_000) / 10_000 : v);

export async function evaluateModel(model: LoadedModel, dataDir: string, options: EvalOptions = {}): Promise<EvalReport> {
  const { manifest } = model;
  const labels = manifest.labels;
  const folders = (await readdir(dataDir, { withFileTypes: true }))
    .filter((d) => d.isDirectory() || d.isSymbolicLink())
    .map((d) => d.name)
    .sort();
  const unknown = folders.filter((f) => f !== 'reject' && !labels.includes(f));
  if (unknown.length) {
    throw new Error(`${dataDir}: folders ${unknown.join(', ')} are not labels of ${model.id} (${labels.join(', ')}) or reject`);
  }
  const jobs: { file: string; truth: number | 'reject' }[] = [];
  for (const f of folders) {
    const truth = f === 'reject' ? 'reject' : labels.indexOf(f);
    for (const file of await listImages(path.join(dataDir, f), options.limit)) jobs.push({ file, truth });
  }
  if (!jobs.some((j) => j.truth !== 'reject')) throw new Error(`${dataDir}: no labelled images`);

  const truth: number[] = [];
  const predicted: number[] = [];
  const probs: (number[] | null)[] = [];
  const totalMs: number[] = [];
  const modelMs: number[] = [];
  const falseRefusalsByCheck: Record<string, number> = {};
  const reject = { n: 0, refused: 0, byCategory: {} as Record<string, Count>, byCheck: {} as Record<string, number> };
  let done = 0;
  for (const job of jobs) {
    // As served: the declared type goes through the scan-type check before the model runs.
    const analysis = await analyzeScan({ get: () => model }, await readFile(job.file), { scanType: manifest.task });
    totalMs.push(analysis.timings.totalMs);
    if (analysis.timings.modelMs !== null) modelMs.push(analysis.timings.modelMs);
    const { result } = analysis;
    if (job.truth === 'reject') {
      const category = path.basename(job.file).split('-')[0]!;
      const c = (reject.byCategory[category] ??= { n: 0, refused: 0 });
      reject.n++;
      c.n++;
      if (result.refused) {
        reject.refused++;
        c.refused++;
        reject.byCheck[result.check] = (reject.byCheck[result.check] ?? 0) + 1;
      }
    } else {
      truth.push(job.truth);
      predicted.push(servedPrediction(result, labels));
      probs.push(analysis.scores && !result.refused ? analysis.scores.probabilities : null);
      if (result.refused) falseRefusalsByCheck[result.check] = (falseRefusalsByCheck[result.check] ?? 0) + 1;
    }
    options.onProgress?.(++done, jobs.length);
  }

  const k = labels.length;
  const matrix = confusionMatrix(truth, predicted, k);
  const refusedByClass = labels.map((_, c) => truth.filter((t, i) => t === c && predicted[i] === -1).length);
  const classMetrics = perClassMetrics(matrix, refusedByClass);
  // AUC and calibration need probabilities, so they cover the images the model answered.
  const answered = probs.map((p, i) => ({ p, t: truth[i]! })).filter((x): x is { p: number[]; t: number } => x.p !== null);
  const aucs = labels.map((_, c) =>
    binaryAuc(
      answered.map((x) => x.p[c]!),
      answered.map((x) => x.t === c),
    ),
  );
  const confidence = answered.map((x) => Math.max(...x.p));
  const argmaxCorrect = answered.map((x) => x.p.indexOf(Math.max(...x.p)) === x.t);
  const correct = truth.filter((t, i) => predicted[i] === t).length;

  const perClass: EvalReport['perClass'] = {};
  labels.forEach((l, c) => {
    const m = classMetrics[c]!;
    perClass[l] = { precision: r4(m.precision), recall: r4(m.recall), f1: r4(m.f1), auc: r4(aucs[c]!), support: m.support };
  });

  const rocs: Record<string, [number, number][]> = {};
  let binary: BinaryMetrics | undefined;
  let pointMetrics: EvalReport['operatingPoints'];
  const positives = manifest.decision.positiveLabels;
  if (!positives?.length) {
    labels.forEach((l, c) => {
      rocs[l] = rocCurve(
        answered.map((x) => x.p[c]!),
        answered.map((x) => x.t === c),
      );
    });
  }
  if (positives?.length) {
    const posIdx = positives.map((l) => labels.indexOf(l));
    const actual = truth.map((t) => posIdx.includes(t));
    const pred = predicted.map((p) => (p === -1 ? null : posIdx.includes(p)));
    const scores = probs.map((p) => (p ? posIdx.reduce((s, c) => s + p[c]!, 0) : null));
    const b = binaryMetrics(actual, pred, scores);
    binary = { accuracy: r4(b.accuracy), sensitivity: r4(b.sensitivity), specificity: r4(b.specificity), auc: r4(b.auc) };
    const scored = scores.map((sc, i) => ({ sc, a: actual[i]! })).filter((x): x is { sc: number; a: boolean } => x.sc !== null);
    rocs.pneumonia = rocCurve(
      scored.map((x) => x.sc),
      scored.map((x) => x.a),
    );
    pointMetrics = {};
    for (const [name, point] of Object.entries(model.calibration.operatingPoints)) {
      if (point.threshold === undefined) continue;
      const m = binaryMetrics(actual, scores.map((sc) => (sc === null ? null : sc >= point.threshold!)), scores);
      pointMetrics[name] = { threshold: point.threshold, accuracy: r4(m.accuracy), sensitivity: r4(m.sensitivity), specificity: r4(m.specificity) };
    }
  }

  const cpus = os.cpus();
  return {
    model: { id: model.id, version: manifest.version, sha256: manifest.sha256 },
    dataDir,
    labels: [...labels],
    n: truth.length,
    accuracy: r4(correct / truth.length),
    macroF1: r4(mean(classMetrics.map((m) => m.f1))),
    auc: r4(mean(aucs.filter((a) => !Number.isNaN(a)))),
    ece: r4(expectedCalibrationError(confidence, argmaxCorrect, 15)),
    refusalRate: reject.n ? r4(reject.refused / reject.n) : null,
    falseRefusalRate: r4(predicted.filter((p) => p === -1).length / truth.length),
    latencyMsP50: r4(percentile(totalMs, 50)),
    latencyMsP95: r4(percentile(totalMs, 95)),
    modelLatencyMsP50: r4(percentile(modelMs, 50)),
    modelLatencyMsP95: r4(percentile(modelMs, 95)),
    perClass,
    confusionMatrix: matrix,
    refusedByClass: Object.fromEntries(labels.map((l, c) => [l, refusedByClass[c]!])),
    falseRefusalsByCheck,
    reject: reject.n ? reject : null,
    ...(binary ? { binary } : {}),
    operatingPoint: model.calibration.operatingPoint,
    calibration: model.calibration.source,
    temperature: model.calibration.temperature,
    ...(pointMetrics ? { operatingPoints: pointMetrics } : {}),
    curves: {
      roc: rocs,
      reliability: reliabilityBins(confidence, argmaxCorrect, 15).map((b) => ({
        ...b,
        lo: r4(b.lo),
        hi: r4(b.hi),
        confidence: b.confidence === null ? null : r4(b.confidence),
        accuracy: b.accuracy === null ? null : r4(b.accuracy),
      })),
    },
    machine: {
      cpu: cpus[0]?.model ?? 'unknown',
      cpus: cpus.length,
      node: process.version,
      onnxruntime: ort.env.versions.common,
      loadAverage: Math.round(os.loadavg()[0]! * 10) / 10,
    },
    date: new Date().toISOString(),
  };
}

/** The metrics a scan type's targets may name (src/scan-types), as read from a report. */
const TARGET_METRICS: Record<string, (r: EvalReport) => number | null | undefined> = {
  accuracy: (r) => r.accuracy,
  macroF1: (r) => r.macroF1,
  'binary accuracy': (r) => r.binary?.accuracy,
  'binary AUC': (r) => r.binary?.auc,
  'binary sensitivity': (r) => r.binary?.sensitivity,
  'binary specificity': (r) => r.binary?.specificity,
};

/** Which bar: the release targets on test/, or the targets on external/ (issue 10) where a type has them. */
export type TargetSet = 'test' | 'external';

/** The bar: the scan type's own targets, calibration and refusals. Returns the targets missed. */
export function missedTargets(report: EvalReport, task: ScanType, set: TargetSet = 'test'): string[] {
  const missed: string[] = [];
  const need = (name: string, value: number | null | undefined, ok: (v: number) => boolean, bar: string) => {
    if (value === null || value === undefined || Number.isNaN(value) || !ok(value)) missed.push(`${name} ${value} (target ${bar})`);
  };
  const spec = scanTypeSpec(task);
  const targets: Readonly<Record<string, number>> | undefined = set === 'external' ? spec.externalTargets : spec.targets;
  if (!targets) return [`no ${set} targets for ${task}`];
  for (const [metric, min] of Object.entries(targets)) {
    const read = TARGET_METRICS[metric];
    if (!read) throw new Error(`unknown target metric "${metric}" for ${task}`);
    need(metric, read(report), (v) => v >= min, `>= ${min}`);
  }
  if (set === 'external') {
    // On images from outside the training pool, as served, refusals counted (issue 10).
    need('ECE', report.ece, (v) => v <= 0.05, '<= 0.05');
    need('false refusal rate', report.falseRefusalRate, (v) => v <= 0.01, '<= 0.01');
    return missed;
  }
  need('ECE', report.ece, (v) => v <= 0.05, '<= 0.05');
  need('false refusal rate', report.falseRefusalRate, (v) => v < 0.02, '< 0.02');
  if (report.reject) need('refusal rate on reject/', report.refusalRate, (v) => v >= 0.9, '>= 0.9');
  return missed;
}

/**
 * The regression gate: the figures a model card states (its committed evaluation) that this
 * evaluation falls below. Higher is better for every figure but ECE and the false-refusal rate.
 * `tolerance` absorbs floating-point differences between machines, not real regressions.
 */
export function regressions(report: EvalReport, baseline: Partial<EvalReport>, tolerance = 0.002): string[] {
  const out: string[] = [];
  const check = (name: string, now: number | null | undefined, was: number | null | undefined, higherIsBetter: boolean) => {
    if (was === null || was === undefined || Number.isNaN(was)) return;
    if (now === null || now === undefined || Number.isNaN(now)) {
      out.push(`${name}: not measured now (card: ${was})`);
      return;
    }
    const worse = higherIsBetter ? now < was - tolerance : now > was + tolerance;
    if (worse) out.push(`${name}: ${now} (card: ${was})`);
  };
  check('accuracy', report.accuracy, baseline.accuracy, true);
  check('macro-F1', report.macroF1, baseline.macroF1, true);
  check('AUC', report.auc, baseline.auc, true);
  check('ECE', report.ece, baseline.ece, false);
  check('false refusal rate', report.falseRefusalRate, baseline.falseRefusalRate, false);
  check('refusal rate on reject/', report.refusalRate, baseline.refusalRate, true);
  if (baseline.binary) {
    check('pneumonia-vs-normal accuracy', report.binary?.accuracy, baseline.binary.accuracy, true);
    check('pneumonia-vs-normal sensitivity', report.binary?.sensitivity, baseline.binary.sensitivity, true);
    check('pneumonia-vs-normal specificity', report.binary?.specificity, baseline.binary.specificity, true);
    check('pneumonia-vs-normal AUC', report.binary?.auc, baseline.binary.auc, true);
  }
  return out;
}
