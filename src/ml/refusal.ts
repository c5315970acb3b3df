/**
 * When not to answer. A classifier gives some diagnosis for any input, so before trusting it
 * we check the image is the kind the model was trained on:
 *
 * 1. Input checks before the model runs: the image's own shape (a strip or a sliver is no
 *    scan, and stretching it to the model's square input would make one up), then, on the
 *    resized image, a blank or near-constant image, a colour image (MRIs and X-rays are
 *    grayscale; the datasets are gray stored as RGB), and noise (neighbouring pixels
 *    uncorrelated).
 * 2. The model's own out-of-distribution score: the Mahalanobis distance of its penultimate
 *    features to the nearest training class (Lee et al. 2018), refused above the manifest's
 *    `refusal.oodThreshold` (the 99.5th percentile of validation distances). This catches
 *    what the input checks cannot see: a grayscale photograph or document, or a chest X-ray
 *    sent to the brain model.
 * 3. Then, for an image the model takes for its kind of scan, its orientation (orientation.ts):
 *    a rotated or upside-down scan is refused with how it looks turned, never turned for it.
 *
 * Thresholds of the input checks were set on the *training* images of both datasets (see
 * docs/models/README.md for the measured ranges), far outside what a valid image shows.
 */
import { scanTypeSpec, type ScanType } from '../scan-types/index.js';

export type RefusalCheck = 'shape' | 'blank' | 'colour' | 'noise' | 'out_of_distribution' | 'orientation';

export interface ImageStats {
  /** Standard deviation of the grayscale, 0..255. */
  grayStd: number;
  /** Mean over pixels of max(R,G,B) - min(R,G,B), 0..255. */
  meanChroma: number;
  /** Share of pixels whose chroma exceeds COLOURFUL_PIXEL_CHROMA. */
  colourfulFraction: number;
  /**
   * Mean squared difference of horizontal and vertical neighbours over twice the variance:
   * 1 - lag-1 autocorrelation. About 1 for white noise, a few hundredths for a scan.
   */
  highFrequencyRatio: number;
}

export interface InputCheckThresholds {
  minGrayStd: number;
  maxMeanChroma: number;
  maxColourfulFraction: number;
  maxHighFrequencyRatio: number;
}

const COLOURFUL_PIXEL_CHROMA = 40;

/** Measured with scripts/measure-input-checks.ts; see docs/models/README.md. */
export const DEFAULT_INPUT_THRESHOLDS: InputCheckThresholds = {
  // training images: grayStd >= 19.9; blank frames < 1
  minGrayStd: 8,
  // training images: meanChroma <= 5.5, colourful share <= 0.042 (a few MRIs carry a blue
  // publisher banner); synthetic colour photos: meanChroma >= 47, share >= 0.47
  maxMeanChroma: 20,
  maxColourfulFraction: 0.2,
  // training images: <= 0.363 (edge-enhanced MRIs); pixel noise >= 0.74
  maxHighFrequencyRatio: 0.6,
};

export interface Refusal {
  check: RefusalCheck;
  reason: string;
}

/** The gray (R + G + B) / 3 of each channel sum, as a double: one table read per pixel, the same values. */
const GRAY_OF_SUM = Float64Array.from({ length: 3 * 255 + 1 }, (_, sum) => sum / 3);

/** max(R, G, B) - min(R, G, B) of an RGB pixel. */
function chroma(r: number, g: number, b: number): number {
  const hi = r > g ? (r > b ? r : b) : g > b ? g : b;
  const lo = r < g ? (r < b ? r : b) : g < b ? g : b;
  return hi - lo;
}

/**
 * The input checks' statistics of the resized image. `channelSums` (R + G + B per pixel, as
 * preprocessing computes them) saves summing them again; the values are the same either way.
 */
export function imageStats(rgb: Uint8Array, width: number, height: number, channelSums?: Uint16Array): ImageStats {
  const n = width * height;
  if (rgb.length !== n * 3 || (channelSums && channelSums.length !== n)) throw new Error(`expected a ${width} x ${height} image`);
  const sums = channelSums ?? new Uint16Array(n);
  // Chroma and the colourful count are integers: exact in any order. The gray sum is added in
  // pixel order, as ever, so the mean is the same double.
  let chromaSum = 0;
  let colourful = 0;
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    const r = rgb[j]!;
    const g = rgb[j + 1]!;
    const b = rgb[j + 2]!;
    if (!channelSums) sums[i] = r + g + b;
    const c = chroma(r, g, b);
    chromaSum += c;
    if (c > COLOURFUL_PIXEL_CHROMA) colourful++;
  }
  let sum = 0;
  for (let i = 0; i < n; i++) sum += GRAY_OF_SUM[sums[i]!]!;
  const mean = sum / n;
  // One pass for the variance and the neighbour differences, each summed in the same order
  // as two separate passes would (per pixel: its right neighbour, then the one below). The
  // last column and the last row are their own loops, so the inner loop has no bounds tests.
  let variance = 0;
  let diff = 0;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    const last = row + width - 1;
    if (y + 1 < height) {
      for (let i = row; i < last; i++) {
        const v = GRAY_OF_SUM[sums[i]!]!;
        variance += (v - mean) ** 2;
        diff += (GRAY_OF_SUM[sums[i + 1]!]! - v) ** 2;
        diff += (GRAY_OF_SUM[sums[i + width]!]! - v) ** 2;
      }
      const v = GRAY_OF_SUM[sums[last]!]!;
      variance += (v - mean) ** 2;
      diff += (GRAY_OF_SUM[sums[last + width]!]! - v) ** 2;
    } else {
      for (let i = row; i < last; i++) {
        const v = GRAY_OF_SUM[sums[i]!]!;
        variance += (v - mean) ** 2;
        diff += (GRAY_OF_SUM[sums[i + 1]!]! - v) ** 2;
      }
      variance += (GRAY_OF_SUM[sums[last]!]! - mean) ** 2;
    }
  }
  variance /= n;
  const pairs = (width - 1) * height + width * (height - 1);
  return {
    grayStd: Math.sqrt(variance),
    meanChroma: chromaSum / n,
    colourfulFraction: colourful / n,
    highFrequencyRatio: variance > 0 ? diff / pairs / (2 * variance) : 0,
  };
}

/** The input checks; null when the image may go to the model. */
export function checkInput(
  stats: ImageStats,
  task: ScanType,
  thresholds: InputCheckThresholds = DEFAULT_INPUT_THRESHOLDS,
): Refusal | null {
  const subject = scanTypeSpec(task).subject;
  if (stats.grayStd < thresholds.minGrayStd) {
    return {
      check: 'blank',
      reason: `The image is blank or nearly uniform (no visible structure), so it cannot be ${subject}; no diagnosis was made.`,
    };
  }
  if (stats.meanChroma > thresholds.maxMeanChroma || stats.colourfulFraction > thresholds.maxColourfulFraction) {
    return {
      check: 'colour',
      reason: `The image is in colour, but ${subject} is grayscale; it looks like a photograph or another kind of picture, so no diagnosis was made.`,
    };
  }
  if (stats.highFrequencyRatio > thresholds.maxHighFrequencyRatio) {
    return {
      check: 'noise',
      reason: `The image looks like random noise rather than ${subject}; no diagnosis was made.`,
    };
  }
  return null;
}

/**
 * The image's own proportions, before it is stretched to the model's square input. Brain MRI
 * slices and chest radiographs are close to square: the DICOM corpus's MR and CR images range
 * from 1:1 to 4:3, detectors are 14 x 17 or 17 x 17 inches, and a screenshot of a viewer is
 * 16:9 at most. The datasets were stored square, so training says nothing here; a 4000 x 20
 * strip of a normal chest, stretched back to 224 x 224, was called viral pneumonia at 0.84
 * before this check. The limits are far outside any acquisition, so a real scan never meets them.
 */
export const SHAPE_LIMITS = { maxAspectRatio: 2.5, minSide: 32 } as const;

/** The shape check on the image as uploaded (or as rendered from DICOM); null when it may go on. */
export function checkShape(width: number, height: number, task: ScanType): Refusal | null {
  const subject = scanTypeSpec(task).subject;
  const short = Math.min(width, height);
  const ratio = Math.max(width, height) / short;
  if (ratio > SHAPE_LIMITS.maxAspectRatio) {
    return {
      check: 'shape',
      reason:
        `The image is ${width} x ${height} pixels (its long side ${ratio.toFixed(1)} times its short side), far from the near-square ` +
        `shape of ${subject}: it looks like a strip or a cropped part of an image, and stretching it to the model's square ` +
        `input would distort the anatomy, so no diagnosis was made. Upload the whole image.`,
    };
  }
  if (short < SHAPE_LIMITS.minSide) {
    return {
      check: 'shape',
      reason:
        `The image is only ${width} x ${height} pixels, too small to show the anatomy of ${subject}; no diagnosis was made. ` +
        `Upload the original image rather than a thumbnail.`,
    };
  }
  return null;
}

/** The model-side check on the Mahalanobis distance of the features. */
export function checkDistance(distance: number, threshold: number, task: ScanType): Refusal | null {
  if (Number.isFinite(distance) && distance <= threshold) return null;
  return {
    check: 'out_of_distribution',
    reason:
      `The image does not resemble the ${scanTypeSpec(task).subject.replace(/^an? /, '')} images this model was trained on ` +
      `(out-of-distribution score ${Number.isFinite(distance) ? distance.toFixed(1) : 'undefined'}, limit ${threshold.toFixed(1)}). ` +
      `It may be another kind of scan or picture, or of unusual quality; no diagnosis was made.`,
  };
}
