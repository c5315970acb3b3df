/**
 * Is the scan upright? Both models were trained on upright scans and answer a rotated or
 * upside-down one anyway, and worse (docs/models/README.md, "Refusal"), so a scan that looks
 * rotated is refused with what to do about it. It is never turned automatically: the doctor
 * should see and judge the image that was analysed.
 *
 * A check reads a thumbnail of the preprocessed image, made from the channel sums preprocessing
 * already computed (no second decode), and is described by `orientation-<task>.json`
 * (ml/train_orientation.py):
 * - chest X-ray: a small multinomial logistic regression on a 32 x 32 thumbnail (no model pass,
 *   under half the router's time);
 * - brain MRI: a small CNN on a 56 x 56 thumbnail (`orientation-brain-mri.onnx`, its four quarter
 *   turns combined inside the graph), since the regression caught under half of the quarter turns.
 *   It refuses quarter turns only (`refuses`): its "upside down" verdicts were every one of its
 *   false refusals (high slices, alike either way up: 0.5% of upright and 1.2% of mirrored test/
 *   slices), so an upside-down brain MRI is still answered (docs/models/README.md, "Orientation").
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';

import * as ort from 'onnxruntime-node';

import { scanTypeSpec } from '../scan-types/index.js';
import type { Refusal } from './refusal.js';
import type { ModelTask } from './registry.js';

/** How an image can look: upright (also when mirrored left-right) or turned one of three ways. */
type Orientation = 'upright' | 'rotated_cw' | 'upside_down' | 'rotated_ccw';

interface CheckBase {
  task: ModelTask;
  /** The side of the preprocessed image, and of the thumbnail the check reads. */
  size: number;
  grid: number;
  classes: Orientation[];
  /** Refused when P(upright) is below this (ml/train_orientation.py's rule, on held-out train/ images). */
  threshold: number;
  /** How it was fitted; heldOut.flagged: the share of each form of the held-out train/ images it flags. */
  training?: { heldOut?: { flagged?: Record<string, number> } };
  /**
   * The turns it refuses, when P(upright) is below the threshold and one of these is the most
   * likely; the others are answered as if upright. Default: every turn.
   */
  refuses?: Orientation[];
}

/** A logistic regression on the thumbnail, weights in the JSON. */
interface LinearCheck extends CheckBase {
  kind?: 'linear';
  mean: number[];
  std: number[];
  weights: number[][];
  bias: number[];
}

/** An ONNX graph beside the JSON: thumbnail [n, 1, grid, grid] of gray / 255 in, P of each class out. */
interface OnnxCheck extends CheckBase {
  kind: 'onnx';
  file: string;
  sha256: string;
  input: string;
  output: string;
}

type OrientationCheck = LinearCheck | OnnxCheck;

function invalid(check: OrientationCheck, task: ModelTask): boolean {
  if (check.task !== task || check.size % check.grid !== 0 || check.classes[0] !== 'upright' || !(check.threshold > 0 && check.threshold < 1)) {
    return true;
  }
  if (check.kind === 'onnx') return !check.file || !check.sha256 || !check.input || !check.output;
  const n = check.grid * check.grid;
  const k = check.classes.length;
  return (
    check.mean.length !== n ||
    check.std.length !== n ||
    check.bias.length !== k ||
    check.weights.length !== k ||
    check.weights.some((row) => row.length !== n)
  );
}

const checks = new Map<ModelTask, OrientationCheck | null>();
/** The task's check, or null when it has none. */
export function orientationCheckOf(task: ModelTask): OrientationCheck | null {
  if (!checks.has(task)) {
    const file = new URL(`./orientation-${task}.json`, import.meta.url);
    let check: OrientationCheck | null = null;
    if (existsSync(file)) {
      check = JSON.parse(readFileSync(file, 'utf8')) as OrientationCheck;
      if (invalid(check, task)) {
        throw new Error(`orientation-${task}.json: expected ${task}, upright first, its weights or graph, and a threshold in (0, 1)`);
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
function linearProbabilities(check: LinearCheck, features: ArrayLike<number>): Record<Orientation, number> {
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

const sessions = new Map<ModelTask, Promise<ort.InferenceSession>>();

/** The check's graph, loaded once (a few hundred kB; one thread, as it runs beside the model's pass). */
function sessionOf(check: OnnxCheck): Promise<ort.InferenceSession> {
  let session = sessions.get(check.task);
  if (!session) {
    const bytes = readFileSync(new URL(`./${check.file}`, import.meta.url));
    const digest = createHash('sha256').update(bytes).digest('hex');
    if (digest !== check.sha256) throw new Error(`${check.file}: sha256 ${digest} does not match orientation-${check.task}.json`);
    session = ort.InferenceSession.create(bytes, {
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
    });
    sessions.set(check.task, session);
  }
  return session;
}

async function onnxProbabilities(check: OnnxCheck, features: Float64Array): Promise<Record<Orientation, number>> {
  const session = await sessionOf(check);
  const input = new ort.Tensor('float32', Float32Array.from(features), [1, 1, check.grid, check.grid]);
  const out = await session.run({ [check.input]: input });
  const p = out[check.output]!.data as Float32Array;
  return Object.fromEntries(check.classes.map((c, i) => [c, p[i]!])) as Record<Orientation, number>;
}

/** P of each way the preprocessed image may be turned, by the task's check. */
async function orientationProbabilities(
  image: { channelSums: Uint16Array; width: number; height: number },
  check: OrientationCheck,
): Promise<Record<Orientation, number>> {
  const features = thumbnailOf(image, check);
  return check.kind === 'onnx' ? onnxProbabilities(check, features) : linearProbabilities(check, features);
}

function thumbnailOf(image: { channelSums: Uint16Array; width: number; height: number }, check: OrientationCheck): Float64Array {
  if (image.width !== check.size || image.height !== check.size || image.channelSums.length !== check.size * check.size) {
    throw new Error(`orientation-${check.task}.json needs a ${check.size} x ${check.size} image, got ${image.width} x ${image.height}`);
  }
  return thumbnail(image.channelSums, check.size, check.grid);
}

function refusalOf(p: Record<Orientation, number>, check: OrientationCheck): Refusal | null {
  if (p.upright >= check.threshold) return null;
  const turned = (Object.keys(HOW) as (keyof typeof HOW)[]).reduce((a, b) => ((p[b] ?? 0) > (p[a] ?? 0) ? b : a));
  if (check.refuses && !check.refuses.includes(turned)) return null;
  const { name, subject } = scanTypeSpec(check.task);
  const upright = p.upright < 0.001 ? 'under 0.1%' : `${(p.upright * 100).toFixed(1)}%`;
  return {
    check: 'orientation',
    reason:
      `The image appears to be ${HOW[turned]}: the orientation check puts the chance that it is upright at ${upright}. ` +
      `The model reads ${subject} only the right way up, so no diagnosis was made, and the image was not turned automatically. ` +
      `Upload the ${name} upright.`,
  };
}

/** The orientation check on the preprocessed image; null when it looks upright or the task has no check. */
export async function checkOrientation(
  image: { channelSums: Uint16Array; width: number; height: number },
  task: ModelTask,
  check: OrientationCheck | null = orientationCheckOf(task),
): Promise<Refusal | null> {
  if (!check) return null;
  return refusalOf(await orientationProbabilities(image, check), check);
}

/**
 * The same for a task whose check is a regression (chest X-ray), without waiting: the router
 * asks it of an image turned back each way on its own synchronous path.
 */
export function checkLinearOrientation(image: { channelSums: Uint16Array; width: number; height: number }, task: ModelTask): Refusal | null {
  const check = orientationCheckOf(task);
  if (!check) return null;
  if (check.kind === 'onnx') throw new Error(`orientation-${task}.json is a graph: use checkOrientation`);
  return refusalOf(linearProbabilities(check, thumbnailOf(image, check)), check);
}
