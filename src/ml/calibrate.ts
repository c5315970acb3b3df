/**
 * Calibration and operating points from labelled images, through the served pipeline:
 * temperature scaling (Guo et al. 2017) fitted by log loss on the images the model answered,
 * then the pneumonia thresholds of the named operating points chosen on the same images:
 *
 * - `screening`: the highest threshold that keeps sensitivity >= 0.98 (most specific among the
 *   high-sensitivity ones): a missed pneumonia costs more than a recall;
 * - `general`: the highest threshold that keeps sensitivity >= 0.95, the release target: fewer
 *   false alarms than screening where the population differs from the training pool;
 * - `balanced`: the threshold of the largest Youden index, sensitivity + specificity - 1.
 *
 * The two sensitivity floors can be required on more than one set at once (after training:
 * validation and external/), so that the point holds for both populations; the threshold is then
 * the lowest of the per-set ones. They count a refused pneumonia as missed, as served.
 *
 * Used after training (scripts/calibrate-model.ts, on external/) and by a site before go-live
 * (npm run calibrate, on its own images). Metrics at a point count refusals as served: a refused
 * image is neither a true positive nor a true negative.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { analyzeScan, calibratedProbabilities } from './inference.js';
import { binaryAuc, expectedCalibrationError } from './metrics.js';
import type { LoadedModel } from './registry.js';

const IMAGE_FILE = /\.(png|jpe?g)$/i;

/** One labelled image as the model saw it: its logits, or null when it was refused. */
export interface ScoredImage {
  file: string;
  /** Label index. */
  truth: number;
  logits: number[] | null;
  /** Grouping for cross-fitting (patient); the file name when unknown. */
  group: string;
}

export interface PointMetrics {
  threshold: number;
  sensitivity: number;
  specificity: number;
  accuracy: number;
  /** Images, including refused ones. */
  n: number;
  refused: number;
}

const SCREENING_MIN_SENSITIVITY = 0.98;
const GENERAL_MIN_SENSITIVITY = 0.95;
/** The points whose threshold is the highest one keeping a sensitivity floor. */
const SENSITIVITY_FLOORS = { screening: SCREENING_MIN_SENSITIVITY, general: GENERAL_MIN_SENSITIVITY } as const;

export const POINT_CRITERIA = {
  screening: `the highest threshold with sensitivity >= ${SCREENING_MIN_SENSITIVITY} (refusals counted as misses)`,
  general: `the highest threshold with sensitivity >= ${GENERAL_MIN_SENSITIVITY} (refusals counted as misses)`,
  balanced: 'the largest Youden index (sensitivity + specificity - 1)',
} as const;
export type PointName = keyof typeof POINT_CRITERIA;
export const POINT_DESCRIPTIONS: Record<PointName, string> = {
  screening: 'high sensitivity: few missed pneumonias, more false alarms',
  general: 'sensitivity >= 0.95 (the release target): fewer false alarms than screening',
  balanced: 'sensitivity and specificity weighed equally',
};

/** Scores of one labelled set, null where the image was refused. */
export interface ScoredSet {
  scores: (number | null)[];
  isPositive: boolean[];
}

/** Label folders of `dir` (as for npm run eval); a `reject/` folder is ignored here. */
export async function labelledImages(dir: string, labels: readonly string[], groupOf?: (file: string) => string) {
  const out: { file: string; truth: number; group: string }[] = [];
  const folders = (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory() || d.isSymbolicLink()).map((d) => d.name);
  const unknown = folders.filter((f) => f !== 'reject' && !labels.includes(f));
  if (unknown.length) throw new Error(`${dir}: folders ${unknown.join(', ')} are not labels (${labels.join(', ')})`);
  for (const [truth, label] of labels.entries()) {
    if (!folders.includes(label)) continue;
    for (const name of (await readdir(path.join(dir, label))).filter((n) => IMAGE_FILE.test(n)).sort()) {
      const file = path.join(dir, label, name);
      out.push({ file, truth, group: groupOf?.(file) ?? name });
    }
  }
  return out;
}

/** Runs each image through the served pipeline (scan-type check, input checks, model, distance refusal). */
export async function scoreImages(
  model: LoadedModel,
  images: { file: string; truth: number; group: string }[],
  onProgress?: (done: number, total: number) => void,
): Promise<ScoredImage[]> {
  const out: ScoredImage[] = [];
  for (const img of images) {
    const a = await analyzeScan({ get: () => model }, await readFile(img.file), { scanType: model.manifest.task, heatmap: false });
    out.push({ ...img, logits: a.result.refused || !a.scores ? null : a.scores.logits });
    onProgress?.(out.length, images.length);
  }
  return out;
}

function answered(rows: ScoredImage[]): { logits: number[]; truth: number }[] {
  return rows.filter((r): r is ScoredImage & { logits: number[] } => r.logits !== null);
}

/** Mean negative log-likelihood of the true labels at temperature T. */
function logLoss(rows: ScoredImage[], temperature: number): number {
  const a = answered(rows);
  let total = 0;
  for (const r of a) total -= Math.log(Math.max(1e-12, calibratedProbabilities(r.logits, temperature)[r.truth]!));
  return total / Math.max(1, a.length);
}

/** The temperature minimising the log loss: golden-section search on log T in [0.05, 20]. */
export function fitTemperature(rows: ScoredImage[]): number {
  let lo = Math.log(0.05);
  let hi = Math.log(20);
  const phi = (Math.sqrt(5) - 1) / 2;
  let a = hi - phi * (hi - lo);
  let b = lo + phi * (hi - lo);
  let fa = logLoss(rows, Math.exp(a));
  let fb = logLoss(rows, Math.exp(b));
  for (let i = 0; i < 80; i++) {
    if (fa < fb) {
      hi = b;
      b = a;
      fb = fa;
      a = hi - phi * (hi - lo);
      fa = logLoss(rows, Math.exp(a));
    } else {
      lo = a;
      a = b;
      fa = fb;
      b = lo + phi * (hi - lo);
      fb = logLoss(rows, Math.exp(b));
    }
  }
  return Math.round(Math.exp((lo + hi) / 2) * 100_000) / 100_000;
}

/** P(positive labels) per image at temperature T, null when refused. */
export function positiveScores(rows: ScoredImage[], temperature: number, positive: readonly number[]): (number | null)[] {
  return rows.map((r) => (r.logits ? positive.reduce((s, c) => s + calibratedProbabilities(r.logits!, temperature)[c]!, 0) : null));
}

const r4 = (v: number) => Math.round(v * 10_000) / 10_000;

/** Sensitivity, specificity and accuracy at a threshold, refusals counted as neither TP nor TN. */
export function metricsAt(scores: (number | null)[], isPositive: boolean[], threshold: number): PointMetrics {
  let tp = 0;
  let tn = 0;
  let pos = 0;
  let refused = 0;
  scores.forEach((s, i) => {
    if (isPositive[i]) pos++;
    if (s === null) refused++;
    else if (isPositive[i] && s >= threshold) tp++;
    else if (!isPositive[i] && s < threshold) tn++;
  });
  const neg = scores.length - pos;
  return {
    threshold: r4(threshold),
    sensitivity: r4(pos ? tp / pos : Number.NaN),
    specificity: r4(neg ? tn / neg : Number.NaN),
    accuracy: r4((tp + tn) / Math.max(1, scores.length)),
    n: scores.length,
    refused,
  };
}

/** Candidate thresholds: midpoints between consecutive distinct answered scores, and one beyond each end. */
function candidateThresholds(scores: (number | null)[]): number[] {
  const distinct = [...new Set(scores.filter((s): s is number => s !== null))].sort((a, b) => a - b);
  const candidates = [distinct[0]! / 2];
  for (let i = 1; i < distinct.length; i++) candidates.push((distinct[i - 1]! + distinct[i]!) / 2);
  candidates.push((distinct[distinct.length - 1]! + 1) / 2);
  return candidates;
}

/**
 * The highest candidate threshold at which sensitivity, counting refused positives as missed (as
 * served), is still >= `min`; the lowest candidate when none reaches it.
 */
function highestWithSensitivity(set: ScoredSet, min: number): number {
  const candidates = candidateThresholds(set.scores);
  const pos = set.isPositive.filter(Boolean).length;
  let best = candidates[0]!;
  for (const t of candidates) {
    const tp = set.scores.filter((s, i) => set.isPositive[i] && s !== null && s >= t).length;
    if (tp / Math.max(1, pos) >= min) best = t;
  }
  return best;
}

/**
 * Thresholds of the named points. Candidates are midpoints between consecutive distinct
 * scores, so a threshold never sits exactly on an image's score. The sensitivity floors
 * (screening, general) must hold on `scores` and on every set in `alsoOn` (the lowest of the
 * per-set thresholds); balanced is chosen on `scores` alone.
 */
export function choosePoints(scores: (number | null)[], isPositive: boolean[], alsoOn: ScoredSet[] = []): Record<PointName, number> {
  const candidates = candidateThresholds(scores);
  // Youden over the answered images.
  const ans = scores.map((s, i) => ({ s, p: isPositive[i]! })).filter((x): x is { s: number; p: boolean } => x.s !== null);
  const pos = ans.filter((x) => x.p).length;
  const neg = ans.length - pos;
  let balanced = candidates[0]!;
  let bestJ = -Infinity;
  for (const t of candidates) {
    const sens = ans.filter((x) => x.p && x.s >= t).length / Math.max(1, pos);
    const spec = ans.filter((x) => !x.p && x.s < t).length / Math.max(1, neg);
    if (sens + spec - 1 > bestJ) {
      bestJ = sens + spec - 1;
      balanced = t;
    }
  }
  const sets = [{ scores, isPositive }, ...alsoOn];
  const floor = (min: number) => Math.min(...sets.map((set) => highestWithSensitivity(set, min)));
  const round = (v: number) => Math.min(0.9999, Math.max(0.0001, Math.round(v * 10_000) / 10_000));
  return {
    screening: round(floor(SENSITIVITY_FLOORS.screening)),
    general: round(floor(SENSITIVITY_FLOORS.general)),
    balanced: round(balanced),
  };
}

/** Share of rows in fold 0 or 1, by a stable hash of the group (patients never split). */
function foldOf(group: string): 0 | 1 {
  let h = 2166136261;
  for (let i = 0; i < group.length; i++) h = Math.imul(h ^ group.charCodeAt(i), 16777619) >>> 0;
  return (h & 1) as 0 | 1;
}

/**
 * An honest estimate of how points chosen on a data set do on new images of its kind: choose
 * on one half (by patient), measure on the other, both ways, and pool the two halves' counts.
 * Sets in `alsoOn` (validation) take part in every choice whole, as they do in the real one.
 */
export function crossFitted(
  rows: ScoredImage[],
  temperature: number,
  positive: readonly number[],
  alsoOn: ScoredSet[] = [],
): Record<PointName, PointMetrics> {
  const isPos = rows.map((r) => positive.includes(r.truth));
  const scores = positiveScores(rows, temperature, positive);
  const folds = rows.map((r) => foldOf(r.group));
  const out = {} as Record<PointName, PointMetrics>;
  for (const name of Object.keys(POINT_CRITERIA) as PointName[]) {
    let tp = 0;
    let tn = 0;
    let pos = 0;
    let neg = 0;
    let refused = 0;
    const thresholds: number[] = [];
    for (const f of [0, 1] as const) {
      const fit = folds.map((x) => x !== f);
      const t = choosePoints(
        scores.filter((_, i) => fit[i]),
        isPos.filter((_, i) => fit[i]),
        alsoOn,
      )[name];
      thresholds.push(t);
      const m = metricsAt(
        scores.filter((_, i) => !fit[i]),
        isPos.filter((_, i) => !fit[i]),
        t,
      );
      const p = isPos.filter((v, i) => !fit[i] && v).length;
      const n = m.n - p;
      tp += Math.round(m.sensitivity * p);
      tn += Math.round(m.specificity * n);
      pos += p;
      neg += n;
      refused += m.refused;
    }
    out[name] = {
      threshold: r4((thresholds[0]! + thresholds[1]!) / 2),
      sensitivity: r4(tp / Math.max(1, pos)),
      specificity: r4(tn / Math.max(1, neg)),
      accuracy: r4((tp + tn) / Math.max(1, pos + neg)),
      n: pos + neg,
      refused,
    };
  }
  return out;
}

export interface CalibrationSummary {
  temperature: number;
  thresholds: Record<PointName, number>;
  /** At the chosen points on the data they were chosen on (optimistic). */
  points: Record<PointName, PointMetrics>;
  /** Chosen on one half, measured on the other (honest). */
  crossFitted: Record<PointName, PointMetrics>;
  auc: number;
  ece: number;
  logLoss: { before: number; after: number };
  counts: Record<string, number>;
  refused: number;
}

/**
 * Fit the temperature and choose the points on scored images of a chest model. With `alsoOn`
 * (after training: the validation images), the temperature is fitted on both sets together and
 * the sensitivity floors must hold on both; balanced and the figures stay on `rows`.
 */
export function calibrate(
  model: LoadedModel,
  rows: ScoredImage[],
  options: { temperature?: number; alsoOn?: ScoredImage[] } = {},
): CalibrationSummary {
  const labels = model.manifest.labels;
  const positive = (model.manifest.decision.positiveLabels ?? []).map((l) => labels.indexOf(l));
  if (positive.length === 0) throw new Error(`${model.id} has no positive labels: operating points are for the chest model`);
  const also = options.alsoOn ?? [];
  // A given temperature (the training one) is kept; otherwise it is fitted on these images.
  const temperature = options.temperature ?? fitTemperature([...rows, ...also]);
  const scores = positiveScores(rows, temperature, positive);
  const isPos = rows.map((r) => positive.includes(r.truth));
  const alsoOn: ScoredSet[] = also.length
    ? [{ scores: positiveScores(also, temperature, positive), isPositive: also.map((r) => positive.includes(r.truth)) }]
    : [];
  const thresholds = choosePoints(scores, isPos, alsoOn);
  const points = {} as Record<PointName, PointMetrics>;
  for (const name of Object.keys(thresholds) as PointName[]) points[name] = metricsAt(scores, isPos, thresholds[name]);
  const ans = answered(rows);
  const probs = ans.map((r) => calibratedProbabilities(r.logits, temperature));
  const ece = expectedCalibrationError(
    probs.map((p) => Math.max(...p)),
    probs.map((p, i) => p.indexOf(Math.max(...p)) === ans[i]!.truth),
    15,
  );
  const answeredScores = scores.filter((s): s is number => s !== null);
  const answeredPos = isPos.filter((_, i) => scores[i] !== null);
  return {
    temperature,
    thresholds,
    points,
    crossFitted: crossFitted(rows, temperature, positive, alsoOn),
    auc: r4(binaryAuc(answeredScores, answeredPos)),
    ece: r4(ece),
    logLoss: { before: r4(logLoss(rows, model.calibration.temperature)), after: r4(logLoss(rows, temperature)) },
    counts: Object.fromEntries(labels.map((l, c) => [l, rows.filter((r) => r.truth === c).length])),
    refused: rows.filter((r) => r.logits === null).length,
  };
}

/**
 * Enough images to choose a threshold for sensitivity >= 0.98 and to say what it gives: with
 * fewer than 100 of either group, one image moves sensitivity or specificity by more than a
 * percentage point and the 95% interval of a 0.97 sensitivity spans more than 0.9 to 0.99.
 */
const MIN_PER_GROUP = 100;

export function tooFewImages(counts: Record<string, number>, positiveLabels: readonly string[]): string | null {
  const pos = positiveLabels.reduce((s, l) => s + (counts[l] ?? 0), 0);
  const neg = Object.entries(counts)
    .filter(([l]) => !positiveLabels.includes(l))
    .reduce((s, [, n]) => s + n, 0);
  if (pos >= MIN_PER_GROUP && neg >= MIN_PER_GROUP) return null;
  return (
    `Too few labelled images to calibrate: ${pos} with pneumonia (${positiveLabels.join(' + ')}) and ${neg} normal; ` +
    `at least ${MIN_PER_GROUP} of each are needed. With fewer, one image moves sensitivity or specificity by more ` +
    `than a percentage point, and a threshold chosen for sensitivity >= ${SCREENING_MIN_SENSITIVITY} could not be told ` +
    `from one giving 0.90. Add ${Math.max(0, MIN_PER_GROUP - pos)} more pneumonia and ${Math.max(0, MIN_PER_GROUP - neg)} more normal images.`
  );
}
