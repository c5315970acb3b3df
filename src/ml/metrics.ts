/**
 * Evaluation maths, in plain functions so they can be tested on hand-made numbers. The
 * definitions follow ml/common.py `metrics_report` so Node and training report alike.
 */

/**
 * Area under the ROC curve via the Mann-Whitney U statistic, ties given their average rank
 * (a tie between a positive and a negative counts one half). NaN when a class is missing.
 */
export function binaryAuc(scores: readonly number[], positive: readonly boolean[]): number {
  if (scores.length !== positive.length) throw new Error('scores and labels differ in length');
  const n = scores.length;
  const nPos = positive.filter(Boolean).length;
  const nNeg = n - nPos;
  if (nPos === 0 || nNeg === 0) return Number.NaN;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a]! - scores[b]!);
  let rankSumPos = 0;
  let i = 0;
  while (i < n) {
    let j = i;
    while (j + 1 < n && scores[order[j + 1]!] === scores[order[i]!]) j++;
    const averageRank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) if (positive[order[k]!]) rankSumPos += averageRank;
    i = j + 1;
  }
  return (rankSumPos - (nPos * (nPos + 1)) / 2) / (nPos * nNeg);
}

/**
 * Expected calibration error with equal-width bins over (0, 1]: the share-weighted mean gap
 * between accuracy and mean confidence per bin (Guo et al. 2017).
 */
export function expectedCalibrationError(confidence: readonly number[], correct: readonly boolean[], bins = 15): number {
  if (confidence.length !== correct.length) throw new Error('confidence and correctness differ in length');
  const n = confidence.length;
  if (n === 0) return Number.NaN;
  const count = new Array<number>(bins).fill(0);
  const confSum = new Array<number>(bins).fill(0);
  const hits = new Array<number>(bins).fill(0);
  for (let i = 0; i < n; i++) {
    const c = confidence[i]!;
    if (!(c > 0)) continue; // (0, 1] as in numpy's (lo, hi] bins; a zero confidence falls in no bin
    const b = Math.min(bins - 1, Math.ceil(c * bins) - 1);
    count[b]!++;
    confSum[b]! += c;
    if (correct[i]) hits[b]!++;
  }
  let ece = 0;
  for (let b = 0; b < bins; b++) {
    if (count[b] === 0) continue;
    ece += (count[b]! / n) * Math.abs(hits[b]! / count[b]! - confSum[b]! / count[b]!);
  }
  return ece;
}

/** matrix[truth][predicted]; predictions of -1 (refused) are left out of the matrix. */
export function confusionMatrix(truth: readonly number[], predicted: readonly number[], classes: number): number[][] {
  const m = Array.from({ length: classes }, () => new Array<number>(classes).fill(0));
  truth.forEach((t, i) => {
    const p = predicted[i]!;
    if (p >= 0) m[t]![p]!++;
  });
  return m;
}

export interface ClassMetrics {
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

/**
 * Precision, recall and F1 per class. `refused[c]` images of class c got no answer: they count
 * against recall (missed) but not against any class's precision.
 */
export function perClassMetrics(matrix: number[][], refused: readonly number[] = []): ClassMetrics[] {
  const k = matrix.length;
  return matrix.map((row, c) => {
    const tp = row[c]!;
    const support = row.reduce((a, b) => a + b, 0) + (refused[c] ?? 0);
    let predicted = 0;
    for (let r = 0; r < k; r++) predicted += matrix[r]![c]!;
    const precision = predicted ? tp / predicted : 0;
    const recall = support ? tp / support : 0;
    const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
    return { precision, recall, f1, support };
  });
}

/** Linear-interpolated percentile (numpy's default), p in [0, 100]. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = ((sorted.length - 1) * p) / 100;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export const mean = (xs: readonly number[]): number =>
  xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : Number.NaN;

export interface BinaryMetrics {
  accuracy: number;
  sensitivity: number;
  specificity: number;
  auc: number;
}

/**
 * Positive-vs-negative metrics. `predicted` is null for a refused image: an error for
 * accuracy, and neither a true positive nor a true negative.
 */
export function binaryMetrics(
  actual: readonly boolean[],
  predicted: readonly (boolean | null)[],
  scores: readonly (number | null)[],
): BinaryMetrics {
  let correct = 0;
  let pos = 0;
  let tp = 0;
  let neg = 0;
  let tn = 0;
  actual.forEach((a, i) => {
    const p = predicted[i];
    if (p === a) correct++;
    if (a) {
      pos++;
      if (p === true) tp++;
    } else {
      neg++;
      if (p === false) tn++;
    }
  });
  const scored = scores.map((s, i) => ({ s, a: actual[i]! })).filter((x): x is { s: number; a: boolean } => x.s !== null);
  return {
    accuracy: actual.length ? correct / actual.length : Number.NaN,
    sensitivity: pos ? tp / pos : Number.NaN,
    specificity: neg ? tn / neg : Number.NaN,
    auc: binaryAuc(
      scored.map((x) => x.s),
      scored.map((x) => x.a),
    ),
  };
}

/** ROC curve points [false-positive rate, true-positive rate], from (0,0) to (1,1), at most `max` points. */
export function rocCurve(scores: readonly number[], positive: readonly boolean[], max = 200): [number, number][] {
  const nPos = positive.filter(Boolean).length;
  const nNeg = positive.length - nPos;
  if (nPos === 0 || nNeg === 0) return [];
  const order = scores.map((s, i) => ({ s, p: positive[i]! })).sort((a, b) => b.s - a.s);
  const points: [number, number][] = [[0, 0]];
  let tp = 0;
  let fp = 0;
  for (let i = 0; i < order.length; i++) {
    if (order[i]!.p) tp++;
    else fp++;
    // One point per distinct score: tied images move the curve together.
    if (i + 1 === order.length || order[i + 1]!.s !== order[i]!.s) points.push([fp / nNeg, tp / nPos]);
  }
  if (points.length <= max) return points;
  const step = (points.length - 1) / (max - 1);
  return Array.from({ length: max }, (_, k) => points[Math.round(k * step)]!);
}

export interface ReliabilityBin {
  lo: number;
  hi: number;
  n: number;
  /** Mean confidence and accuracy of the images in the bin; null when empty. */
  confidence: number | null;
  accuracy: number | null;
}

/** The bins behind the ECE, for a reliability diagram. */
export function reliabilityBins(confidence: readonly number[], correct: readonly boolean[], bins = 15): ReliabilityBin[] {
  const out: ReliabilityBin[] = Array.from({ length: bins }, (_, b) => ({ lo: b / bins, hi: (b + 1) / bins, n: 0, confidence: 0, accuracy: 0 }));
  confidence.forEach((c, i) => {
    if (!(c > 0)) return;
    const bin = out[Math.min(bins - 1, Math.ceil(c * bins) - 1)]!;
    bin.n++;
    bin.confidence! += c;
    bin.accuracy! += correct[i] ? 1 : 0;
  });
  for (const bin of out) {
    bin.confidence = bin.n ? bin.confidence! / bin.n : null;
    bin.accuracy = bin.n ? bin.accuracy! / bin.n : null;
  }
  return out;
}
