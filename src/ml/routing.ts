/**
 * Which model a scan is for, when the uploader did not say, and whether a declared type fits
 * the image. Two sources, in order:
 *
 * 1. The DICOM header (Modality, Body Part Examined), when the file is DICOM and says enough;
 *    a header naming another modality or body part (CT, an MR of the knee) is refused outright.
 * 2. The image: a logistic regression on a 16 x 16 thumbnail and a grey-level histogram
 *    (ml/train_router.py, weights in scan-type-router.json), trained on the train/ images of
 *    both datasets. It costs microseconds, so routing adds no model pass.
 *
 * An image the router sends to brain is also asked whether it is a chest X-ray turned a quarter
 * turn (turnedChest): most of those look more like a brain MRI to the router.
 *
 * The router only chooses between the two types; whether the image is a medical image of that
 * type at all is then decided by the chosen model's own checks (input checks and the
 * out-of-distribution distance), which refuse photographs, documents, blank frames and noise.
 * Measured on both test/ sets, chest external/ and the reject set: docs/models/README.md.
 */
import { readFileSync } from 'node:fs';

import type { DicomInfo } from '../imaging/dicom/info.js';
import { inferScanType } from '../imaging/scan-type.js';
import { listInWords, SCAN_TYPE_IDS, scanTypeSpec } from '../scan-types/index.js';
import { checkLinearOrientation } from './orientation.js';
import { channelSumsOf, type PreprocessedImage } from './preprocess.js';
import type { ModelTask } from './registry.js';

export interface ScanTypeRouter {
  types: [ModelTask, ModelTask];
  grid: number;
  bins: number;
  size: number;
  mean: number[];
  std: number[];
  weights: number[];
  bias: number;
}

const ROUTER_FILE = new URL('./scan-type-router.json', import.meta.url);

let cached: ScanTypeRouter | null = null;

function loadRouter(): ScanTypeRouter {
  if (!cached) {
    const raw = JSON.parse(readFileSync(ROUTER_FILE, 'utf8')) as ScanTypeRouter;
    const n = raw.grid * raw.grid + raw.bins;
    if (raw.weights.length !== n || raw.mean.length !== n || raw.std.length !== n) {
      throw new Error(`scan-type-router.json: expected ${n} weights, means and stds`);
    }
    cached = raw;
  }
  return cached;
}

/** "brain MRI", "chest X-ray": the scan type's name in a sentence (src/scan-types). */
export const SCAN_TYPE_NAME = (type: ModelTask): string => scanTypeSpec(type).name;

/** Per router: a pixel's gray and histogram bin depend on R + G + B alone, so they are tables. */
const sumTables = new WeakMap<ScanTypeRouter, { grayOfSum: Float64Array; binOfSum: Int32Array }>();

function tablesOf(router: ScanTypeRouter) {
  let tables = sumTables.get(router);
  if (!tables) {
    const { grid, bins } = router;
    const grayOfSum = new Float64Array(3 * 255 + 1);
    const binOfSum = new Int32Array(3 * 255 + 1);
    for (let sum = 0; sum < grayOfSum.length; sum++) {
      const gray = sum / 3 / 255;
      grayOfSum[sum] = gray;
      binOfSum[sum] = grid * grid + Math.min(bins - 1, Math.floor(gray * bins));
    }
    tables = { grayOfSum, binOfSum };
    sumTables.set(router, tables);
  }
  return tables;
}

/**
 * The router's features from R + G + B of each pixel of the preprocessed image (size x size),
 * exactly as ml/train_router.py computes them: block means of gray / 255, then the grey-level
 * histogram. Each block's grays are added in pixel order, as ever, so the sums are the same doubles.
 */
function routerFeatures(sums: Uint16Array, width: number, height: number, router: ScanTypeRouter): Float64Array {
  const { grid, bins, size } = router;
  if (width !== size || height !== size || sums.length !== size * size) {
    throw new Error(`the router needs a ${size} x ${size} image, got ${width} x ${height}`);
  }
  const { grayOfSum, binOfSum } = tablesOf(router);
  const block = size / grid;
  const out = new Float64Array(grid * grid + bins);
  // Four histograms, by pixel, summed at the end: neighbouring pixels often fall in the same
  // bin, and one array would make each count wait for the previous one's store. Counts are
  // integers, so the split changes nothing.
  const counts = new Int32Array(4 * (grid * grid + bins));
  const stride = grid * grid + bins;
  const starts = Int32Array.from({ length: grid + 1 }, (_, b) => Math.min(size, Math.ceil(b * block)));
  for (let y = 0; y < size; y++) {
    const row = Math.floor(y / block) * grid;
    const at = y * size;
    for (let b = 0; b < grid; b++) {
      // A block's running sum is carried in a local across its pixels of this row: the same
      // additions in the same order as adding into out[] pixel by pixel, without the store and
      // reload between them.
      let blockSum = out[row + b]!;
      for (let x = starts[b]!; x < starts[b + 1]!; x++) {
        const sum = sums[at + x]!;
        blockSum += grayOfSum[sum]!;
        counts[(x & 3) * stride + binOfSum[sum]!]!++;
      }
      out[row + b] = blockSum;
    }
  }
  for (let i = 0; i < grid * grid; i++) out[i]! /= block * block;
  for (let i = 0; i < bins; i++) {
    const bin = grid * grid + i;
    out[bin] = (counts[bin]! + counts[stride + bin]! + counts[2 * stride + bin]! + counts[3 * stride + bin]!) / (size * size);
  }
  return out;
}

function probabilitiesOf(f: ArrayLike<number>, router: ScanTypeRouter): Record<ModelTask, number> {
  let z = router.bias;
  for (let i = 0; i < f.length; i++) z += (router.weights[i]! * (f[i]! - router.mean[i]!)) / router.std[i]!;
  const second = 1 / (1 + Math.exp(-z));
  const [a, b] = router.types;
  return { [a]: 1 - second, [b]: second } as Record<ModelTask, number>;
}

/** P(type) for both types, from the preprocessed image (or R + G + B of its pixels, as preprocessing gives them). */
export function routeImage(
  image: Uint8Array | { channelSums: Uint16Array },
  width: number,
  height: number,
  router: ScanTypeRouter = loadRouter(),
): Record<ModelTask, number> {
  return routeImageTurns(image, width, height, router).asGiven;
}

/** The router's verdict on an image as given and on it turned a quarter turn either way. */
export interface RoutesOfTurns {
  asGiven: Record<ModelTask, number>;
  turnedCw: Record<ModelTask, number>;
  turnedCcw: Record<ModelTask, number>;
}

/**
 * P(type) of the image as given and turned 90 degrees clockwise and counter-clockwise, from one
 * pass over its pixels: a quarter turn of the square image moves whole blocks of the thumbnail
 * (224 / 16 = 14 px each) and leaves the histogram as it is, so the turned images' features are
 * the same block means rearranged (the same up to the order a block's pixels were added in).
 */
export function routeImageTurns(
  image: Uint8Array | { channelSums: Uint16Array },
  width: number,
  height: number,
  router: ScanTypeRouter = loadRouter(),
): RoutesOfTurns {
  const sums = image instanceof Uint8Array ? channelSumsOf(image, image.length / 3) : image.channelSums;
  const f = routerFeatures(sums, width, height, router);
  const { grid } = router;
  const cw = Float64Array.from(f);
  const ccw = Float64Array.from(f);
  for (let row = 0; row < grid; row++) {
    for (let col = 0; col < grid; col++) {
      // Turned clockwise, block (row, col) shows the block that was at (grid - 1 - col, row).
      cw[row * grid + col] = f[(grid - 1 - col) * grid + row]!;
      ccw[row * grid + col] = f[col * grid + (grid - 1 - row)]!;
    }
  }
  return { asGiven: probabilitiesOf(f, router), turnedCw: probabilitiesOf(cw, router), turnedCcw: probabilitiesOf(ccw, router) };
}

/** What the DICOM header says about the scan type. */
export type DicomHint =
  | { kind: 'type'; scanType: ModelTask; detail: string }
  | { kind: 'refuse'; reason: string }
  | { kind: 'none' };

/** "brain MRI (MR of the head) and chest X-rays (CR/DX of the chest)", from the scan-type table. */
const ANALYSED_BY_DICOM = listInWords(SCAN_TYPE_IDS.map((t) => scanTypeSpec(t).dicomScope), 'and');
const OUR_MODALITIES = new Set(SCAN_TYPE_IDS.flatMap((t) => scanTypeSpec(t).dicom.modalities));

/**
 * The header's verdict. Modality and body part that match one of our models give its type; a
 * modality or body part that matches neither (CT, US, an MR of the knee, a DX of the hand) is a
 * refusal; a header without Modality, or a secondary capture (OT, SC), leaves it to the image.
 */
export function dicomHint(info: Pick<DicomInfo, 'modality' | 'bodyPartExamined'> | null | undefined): DicomHint {
  const modality = info?.modality?.trim().toUpperCase() || undefined;
  if (!modality || modality === 'OT' || modality === 'SC') return { kind: 'none' };
  const part = info?.bodyPartExamined?.trim().toUpperCase() || undefined;
  const type = inferScanType({ modality, bodyPartExamined: part });
  const described = `Modality ${modality}${part ? `, Body Part Examined ${part}` : ''}`;
  if (type) return { kind: 'type', scanType: type, detail: `DICOM header: ${described}` };
  return {
    kind: 'refuse',
    reason:
      `The DICOM header says this is ${described}; ImageMedix analyses ${ANALYSED_BY_DICOM} only, so no analysis was made.` +
      (OUR_MODALITIES.has(modality) ? ' If the header is wrong, upload it again with its scan type chosen ("Scan type" on the upload page, scanType in the API).' : ''),
  };
}

/** How the type of an analysis was settled. */
export interface Routing {
  /** declared: given by the uploader or the analyze endpoint; dicom: from the header; image: by the router. */
  source: 'declared' | 'dicom' | 'image';
  scanType: ModelTask;
  /** The router's probability for that type. */
  probability: number;
  detail?: string;
}

/** Below this router probability a declared type is taken to contradict the image. */
const CONTRADICTION_PROBABILITY = 0.5;

export type RoutingDecision = { ok: true; routing: Routing } | { ok: false; reason: string; scanType: ModelTask | null };

/**
 * The type to analyse as: the declared one (or the header's) when the image agrees, else the
 * router's. A declared or header type that the image contradicts is refused with the reason.
 */
export function decideScanType(
  probabilities: Record<ModelTask, number>,
  declared: { scanType: ModelTask; source: 'declared' | 'dicom'; detail?: string } | null,
): RoutingDecision {
  const types = Object.keys(probabilities) as ModelTask[];
  const best = types.reduce((a, b) => (probabilities[b] > probabilities[a] ? b : a));
  if (!declared) return { ok: true, routing: { source: 'image', scanType: best, probability: round4(probabilities[best]) } };
  const p = probabilities[declared.scanType];
  if (p >= CONTRADICTION_PROBABILITY) {
    return { ok: true, routing: { ...declared, probability: round4(p) } };
  }
  const claimed = declared.source === 'declared' ? `it was declared a ${SCAN_TYPE_NAME(declared.scanType)}` : `its DICOM header says ${SCAN_TYPE_NAME(declared.scanType)}`;
  return {
    ok: false,
    scanType: declared.scanType,
    reason:
      `The image looks like a ${SCAN_TYPE_NAME(best)} (scan-type check ${(probabilities[best] * 100).toFixed(1)}%), but ${claimed}; ` +
      `it was not analysed with the wrong model. Analyse it as a ${SCAN_TYPE_NAME(best)}, or check that the right image was uploaded.`,
  };
}

const round4 = (v: number) => Math.round(v * 10_000) / 10_000;

type Plane = Uint8Array | Uint16Array | Float32Array;

/** A width x height image of `channels` interleaved values, turned 90 degrees clockwise or counter-clockwise. */
function turnPlane<T extends Plane>(plane: T, width: number, height: number, channels: number, clockwise: boolean): T {
  // A decoded JPEG's planes are Buffers, whose constructor is the deprecated `new Buffer(n)` (DEP0005,
  // a warning in the server's log): a Buffer gets Buffer.allocUnsafe (every value is written below).
  const out = Buffer.isBuffer(plane) ? (Buffer.allocUnsafe(plane.length) as unknown as T) : new (plane.constructor as new (n: number) => T)(plane.length);
  // The turned image is height x width; its pixel (x, y) comes from (y, height - 1 - x) turned
  // clockwise, from (width - 1 - y, x) counter-clockwise.
  for (let y = 0; y < width; y++) {
    for (let x = 0; x < height; x++) {
      const from = clockwise ? ((height - 1 - x) * width + y) * channels : (x * width + (width - 1 - y)) * channels;
      const to = (y * height + x) * channels;
      for (let c = 0; c < channels; c++) out[to + c] = plane[from + c]!;
    }
  }
  return out;
}

/** The preprocessed image as if the upload had been turned 90 degrees (the resize is a plain fill, so the pixels are the same). */
export function turnPrepared(prepared: PreprocessedImage, clockwise: boolean): PreprocessedImage {
  const { width, height, source } = prepared;
  return {
    tensor: turnPlane(prepared.tensor, width, height, 1, clockwise),
    width: height,
    height: width,
    rgb: turnPlane(prepared.rgb, width, height, 3, clockwise),
    gray: turnPlane(prepared.gray, width, height, 1, clockwise),
    channelSums: turnPlane(prepared.channelSums, width, height, 1, clockwise),
    source: { width: source.height, height: source.width, gray: turnPlane(source.gray, source.width, source.height, 1, clockwise) },
  };
}

/**
 * At or above this P(chest X-ray) of the image turned back a quarter turn, an image the router
 * sends to the brain model may be a chest X-ray turned 90 degrees (most of those look more like a
 * brain MRI to the router, and the brain model answered a few). Fixed on train/ only, before
 * test/ was read: the upper 0.05% quantile over brain train/ images as stored and mirrored
 * (0.7997), rounded up; docs/models/README.md, "Orientation".
 */
const TURNED_CHEST_PROBABILITY = 0.8;

/** A chest X-ray turned a quarter turn, as the router sees it: which way, and P(chest X-ray) turned back. */
export interface TurnedChest {
  /** The upload is turned clockwise (its top on the right), so turning it back is counter-clockwise. */
  clockwise: boolean;
  probability: number;
}

/**
 * For an image uploaded without a type that the router sends to the brain model: does it look
 * like a chest X-ray turned a quarter turn? Which way is read by the chest orientation check on
 * the image turned back each way (the one that looks upright), or by the router's larger P when
 * that does not settle it. The caller confirms it with the chest model on the image turned back
 * (a grayscale photograph can look like one to the router).
 */
export function turnedChest(prepared: PreprocessedImage, routes: RoutesOfTurns, routedTo: ModelTask): TurnedChest | null {
  if (routedTo === 'chest-xray') return null;
  // Turned back counter-clockwise, an image turned clockwise is upright, and the other way round.
  const backCcw = routes.turnedCcw['chest-xray'];
  const backCw = routes.turnedCw['chest-xray'];
  if (Math.max(backCcw, backCw) < TURNED_CHEST_PROBABILITY) return null;
  const { width, height, channelSums } = prepared;
  const upright = (clockwise: boolean) =>
    checkLinearOrientation({ width, height, channelSums: turnPlane(channelSums, width, height, 1, clockwise) }, 'chest-xray') === null;
  const uprightBackCcw = upright(false);
  const clockwise = uprightBackCcw !== upright(true) ? uprightBackCcw : backCcw >= backCw;
  return { clockwise, probability: clockwise ? backCcw : backCw };
}

const percent = (p: number) => (p > 0.999 ? 'over 99.9%' : `${(p * 100).toFixed(1)}%`);

/** Why a chest X-ray turned a quarter turn, sent without a type, was refused. */
export function turnedChestReason(turn: TurnedChest): string {
  const chest = SCAN_TYPE_NAME('chest-xray');
  const brain = SCAN_TYPE_NAME('brain-mri');
  const how = turn.clockwise ? 'clockwise (its top is on the right)' : 'counter-clockwise (its top is on the left)';
  return (
    `The image looks like a ${chest} rotated 90 degrees ${how}: turned back, the scan-type check (${percent(turn.probability)}) ` +
    `and the ${chest} model take it for a ${chest}. No diagnosis was made, it was not analysed as a ${brain}, and the image ` +
    `was not turned automatically. Upload the ${chest} upright. If it is a ${brain}, upload it again with its scan type ` +
    `chosen ("Scan type" on the upload page, scanType in the API).`
  );
}
