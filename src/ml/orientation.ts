/**
 * Is the scan upright? Both models were trained on upright scans and answer a rotated or
 * upside-down one anyway, and worse (docs/models/README.md, "Refusal"), so a scan that looks
 * rotated is refused with what to do about it. It is never turned automatically: the doctor
 * should see and judge the image that was analysed.
 *
 * A check is a small multinomial logistic regression in `orientation-<task>.json`
 * (ml/train_orientation.py) on a 32 x 32 thumbnail of the preprocessed image, made from the
 * channel sums preprocessing already computed: no model pass, and under half the router's
 * time. A scan type without such a file is not checked (brain MRI: docs/models/README.md says
 * why).
 */
import { existsSync, readFileSync } from 'node:fs';

import { scanTypeSpec } from '../scan-types/index.js';
import type { Refusal } from './refusal.js';
import type { ModelTask } from './registry.js';

/** How an image can look: upright (also when mirrored left-right) or turned one of three ways. */
type Orientation = 'upright' | 'rotated_cw' | 'upside_down' | 'rotated_ccw';

interface OrientationCheck {
  task: ModelTask;
  /** The side of the preprocessed image, and of the thumbnail the weights read. */
  size: number;
  grid: number;
  classes: Orientation[];
  mean: number[];
  std: number[];
  weights: number[][];
  bias: number[];
  /** Refused when P(upright) is below this (ml/train_orientation.py's rule, on held-out train/ images). */
  threshold: number;
}

const checks = new Map<ModelTask, OrientationCheck | null>();

/** The task's check, or null when it has none. */
export function orientationCheckOf(task: ModelTask): OrientationCheck | null {
  if (!checks.has(task)) {
    const file = new URL(`./orientation-${task}.json`, import.meta.url);
    let check: OrientationCheck | null = null;
    if (existsSync(file)) {
      check = JSON.parse(readFileSync(file, 'utf8')) as OrientationCheck;
      const n = check.grid * check.grid;
      const k = check.classes.length;
      if (
        check.task !== task ||
        check.size % check.grid !== 0 ||
        check.classes[0] !== 'upright' ||
        check.mean.length !== n ||
        check.std.length !== n ||
        check.bias.length !== k ||
        check.weights.length !== k ||
        check.weights.some((row) => row.length !== n) ||
        !(check.threshold > 0 && check.threshold < 1)
      ) {
        throw new Error(`orientation-${task}.json: expected ${task}, upright first, ${k} x ${n} weights and a threshold in (0, 1)`);
      }
    }
    checks.set(task, check);
  }
  return checks.get(task)!;
}

/**
 * grid x grid block means of gray / 255 (gray = (R + G + B) / 3) of the preprocessed image, row
 * by row, as ml/train_orientation.py `thumbnail`.
 */
function thumbnail(channelSums: Uint16Array, size: number, grid: number): Float64Array {
  const block = size / grid;
  // Integer sums of R + G + B per block (exact), each block's pixels of a row added in a local.
  const sums = new Uint32Array(grid * grid);
  for (let y = 0, at = 0; y < size; y++) {
    const row = ((y / block) | 0) * grid;
    for (let b = 0; b < grid; b++) {
      let sum = 0;
      for (let end = at + block; at < end; at++) sum += channelSums[at]!;
      sums[row + b]! += sum;
    }
  }
  const out = new Float64Array(grid * grid);
  for (let i = 0; i < out.length; i++) out[i] = sums[i]! / (3 * 255 * block * block);
  return out;
}

/** P of each way the image may be turned, from the thumbnail. */
function orientationProbabilities(check: OrientationCheck, features: ArrayLike<number>): Record<Orientation, number> {
  const logits = check.weights.map((row, c) => {
    let z = check.bias[c]!;
    for (let i = 0; i < row.length; i++) z += (row[i]! * (features[i]! - check.mean[i]!)) / check.std[i]!;
    return z;
  });
  const max = Math.max(...logits);
  const exps = logits.map((z) => Math.exp(z - max));
  const total = exps.reduce((a, b) => a + b, 0);
  return Object.fromEntries(check.classes.map((c, i) => [c, exps[i]! / total])) as Record<Orientation, number>;
}

const HOW: Record<Exclude<Orientation, 'upright'>, string> = {
  rotated_cw: 'rotated 90 degrees clockwise (its top is on the right)',
  upside_down: 'upside down (rotated 180 degrees, or flipped top to bottom)',
  rotated_ccw: 'rotated 90 degrees counter-clockwise (its top is on the left)',
};

/** The orientation check on the preprocessed image; null when it looks upright or the task has no check. */
export function checkOrientation(
  image: { channelSums: Uint16Array; width: number; height: number },
  task: ModelTask,
  check: OrientationCheck | null = orientationCheckOf(task),
): Refusal | null {
  if (!check) return null;
  if (image.width !== check.size || image.height !== check.size || image.channelSums.length !== check.size * check.size) {
    throw new Error(`orientation-${task}.json needs a ${check.size} x ${check.size} image, got ${image.width} x ${image.height}`);
  }
  const p = orientationProbabilities(check, thumbnail(image.channelSums, check.size, check.grid));
  if (p.upright >= check.threshold) return null;
  const turned = (Object.keys(HOW) as (keyof typeof HOW)[]).reduce((a, b) => ((p[b] ?? 0) > (p[a] ?? 0) ? b : a));
  const { name, subject } = scanTypeSpec(task);
  const upright = p.upright < 0.001 ? 'under 0.1%' : `${(p.upright * 100).toFixed(1)}%`;
  return {
    check: 'orientation',
    reason:
      `The image appears to be ${HOW[turned]}: the orientation check puts the chance that it is upright at ${upright}. ` +
      `The model reads ${subject} only the right way up, so no diagnosis was made, and the image was not turned automatically. ` +
      `Upload the ${name} upright.`,
  };
}
