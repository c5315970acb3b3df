import type { DataSet } from 'dicom-parser';
import type { DicomPixels } from './pixels.js';
import { firstNumber, firstString, functionalGroup, textDecoder, uint16, element } from './values.js';

/**
 * Turning stored values into an 8-bit display image, following the DICOM grayscale pipeline
 * (PS3.4 N.2): modality rescale, VOI window, then the photometric polarity.
 *
 * Not applied, by choice: Modality LUT and VOI LUT *sequences* (rare in the images we accept;
 * without a window the automatic one below is used), overlays, and presentation states.
 */

type VoiFunction = 'LINEAR' | 'LINEAR_EXACT' | 'SIGMOID';

export interface DisplayAttributes {
  slope: number;
  intercept: number;
  window?: { center: number; width: number; fn: VoiFunction };
  /** Stored value marking padding (outside the scanned area), left out of the automatic window. */
  paddingValue?: number;
  /** Presentation LUT Shape INVERSE on a MONOCHROME2 image. */
  inverse: boolean;
}

export function readDisplayAttributes(dataSet: DataSet, signed: boolean): DisplayAttributes {
  const decode = textDecoder(dataSet);
  const transform = functionalGroup(dataSet, 'x00289145');
  const voi = functionalGroup(dataSet, 'x00289132');
  const slopeValue = firstNumber(dataSet, 'x00281053') ?? (transform && firstNumber(transform, 'x00281053'));
  const intercept = firstNumber(dataSet, 'x00281052') ?? (transform && firstNumber(transform, 'x00281052')) ?? 0;
  // A zero slope would flatten the image; it is a writer error, not a request.
  const slope = slopeValue !== undefined && slopeValue !== 0 ? slopeValue : 1;

  const source = element(dataSet, 'x00281050') ? dataSet : voi;
  const center = source && firstNumber(source, 'x00281050');
  const width = source && firstNumber(source, 'x00281051');
  const fnName = source ? firstString(source, 'x00281056', decode)?.toUpperCase() : undefined;
  const fn: VoiFunction = fnName === 'LINEAR_EXACT' || fnName === 'SIGMOID' ? fnName : 'LINEAR';
  const usableWidth = width !== undefined && (fn === 'LINEAR' ? width >= 1 : width > 0);

  let paddingValue = uint16(dataSet, 'x00280120');
  if (paddingValue !== undefined && signed) paddingValue = (paddingValue << 16) >> 16;

  return {
    slope,
    intercept,
    ...(center !== undefined && usableWidth ? { window: { center, width: width, fn } } : {}),
    ...(paddingValue !== undefined ? { paddingValue } : {}),
    inverse: firstString(dataSet, 'x20500020', decode)?.toUpperCase() === 'INVERSE',
  };
}

/**
 * The 0.5th and 99.5th percentiles of the stored values (padding excluded): a window that
 * shows the anatomy when the file carries none, without a few hot pixels setting the range.
 */
export function percentileRange(values: ArrayLike<number>, paddingValue?: number): [number, number] | null {
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let count = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (v === paddingValue) continue;
    if (v < min) min = v;
    if (v > max) max = v;
    count++;
  }
  if (count === 0) return null;
  const lowRank = Math.floor(count * 0.005);
  const highRank = Math.max(lowRank, Math.ceil(count * 0.995) - 1);
  const range = max - min;
  if (Number.isInteger(min) && Number.isInteger(max) && range <= 1 << 22) {
    const histogram = new Uint32Array(range + 1);
    for (let i = 0; i < values.length; i++) {
      const v = values[i]!;
      if (v !== paddingValue) histogram[v - min]!++;
    }
    let seen = 0;
    let low = min;
    let high = max;
    let lowFound = false;
    for (let bin = 0; bin <= range; bin++) {
      seen += histogram[bin]!;
      if (!lowFound && seen > lowRank) {
        low = bin + min;
        lowFound = true;
      }
      if (seen > highRank) {
        high = bin + min;
        break;
      }
    }
    return [low, high];
  }
  // Very wide or fractional ranges: percentiles of an even sample are close enough for display.
  const step = Math.max(1, Math.floor(count / 1_000_000));
  const sample: number[] = [];
  for (let i = 0; i < values.length; i += step) if (values[i] !== paddingValue) sample.push(values[i]!);
  sample.sort((a, b) => a - b);
  const at = (q: number) => sample[Math.min(sample.length - 1, Math.floor(q * sample.length))]!;
  return [at(0.005), at(0.995)];
}

export interface DisplayImage {
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 3;
}

export function renderForDisplay(pixels: DicomPixels, display: DisplayAttributes): DisplayImage {
  const { rows, columns } = pixels;
  if (pixels.samplesPerPixel === 3) {
    return { data: renderColour(pixels), width: columns, height: rows, channels: 3 };
  }
  const values = pixels.pixels;
  const out = new Uint8ClampedArray(values.length);
  const { slope, intercept } = display;
  const invert = (pixels.photometricInterpretation === 'MONOCHROME1') !== display.inverse;

  if (display.window) {
    const { center: c, width: w, fn } = display.window;
    for (let i = 0; i < values.length; i++) {
      const x = values[i]! * slope + intercept;
      let y: number;
      if (fn === 'LINEAR') {
        // PS3.3 C.11.2.1.2.1
        if (x <= c - 0.5 - (w - 1) / 2) y = 0;
        else if (x > c - 0.5 + (w - 1) / 2) y = 255;
        else y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255;
      } else if (fn === 'LINEAR_EXACT') {
        if (x <= c - w / 2) y = 0;
        else if (x > c + w / 2) y = 255;
        else y = ((x - c) / w + 0.5) * 255;
      } else {
        y = 255 / (1 + Math.exp((-4 * (x - c)) / w));
      }
      out[i] = invert ? 255 - y : y;
    }
  } else {
    const range = percentileRange(values, display.paddingValue);
    // Percentiles of stored values map through the (monotonic) rescale to modality values.
    const ends = range ? [range[0] * slope + intercept, range[1] * slope + intercept] : [0, 0];
    const low = Math.min(ends[0]!, ends[1]!);
    const high = Math.max(ends[0]!, ends[1]!);
    const scale = high > low ? 255 / (high - low) : 0;
    for (let i = 0; i < values.length; i++) {
      const y = (values[i]! * slope + intercept - low) * scale;
      out[i] = invert ? 255 - y : y;
    }
  }
  return { data: Buffer.from(out.buffer, out.byteOffset, out.byteLength), width: columns, height: rows, channels: 1 };
}

function renderColour(pixels: DicomPixels): Buffer {
  const values = pixels.pixels;
  const bits = pixels.bitsStored;
  const maxValue = 2 ** bits - 1;
  const half = 2 ** (bits - 1);
  const scale = 255 / maxValue;
  const out = new Uint8ClampedArray(values.length);
  const ybr = pixels.photometricInterpretation === 'YBR_FULL';
  for (let i = 0; i < values.length; i += 3) {
    let r = values[i]!;
    let g = values[i + 1]!;
    let b = values[i + 2]!;
    if (ybr) {
      // PS3.3 C.7.6.3.1.2 (full-range ITU-R BT.601).
      const y = r;
      const cb = g - half;
      const cr = b - half;
      r = y + 1.402 * cr;
      g = y - 0.344136 * cb - 0.714136 * cr;
      b = y + 1.772 * cb;
    }
    out[i] = r * scale;
    out[i + 1] = g * scale;
    out[i + 2] = b * scale;
  }
  return Buffer.from(out.buffer, out.byteOffset, out.byteLength);
}
