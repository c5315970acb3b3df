/**
 * The original pixel values of a DICOM image in modality units (stored value x slope +
 * intercept: Hounsfield units for CT, detector values for CR/DX), for window/level in the
 * viewer. The 8-bit PNG has lost the range a radiologist windows through; this has not.
 */
import { ImageDecodeError } from '../errors.js';
import { decodeDicom } from './pixels.js';
import { percentileRange, readDisplayAttributes } from './render.js';

export interface ModalityPixels {
  width: number;
  height: number;
  /** int16 when every modality value is an integer that fits, else float32 (little-endian). */
  format: 'int16' | 'float32';
  data: Int16Array | Float32Array;
  /** The window the file carries, else one spanning the 0.5th-99.5th percentiles. */
  window: { center: number; width: number };
  /** Lowest and highest modality value (the range the window sliders span). */
  min: number;
  max: number;
  /** MONOCHROME1 (or an inverse presentation): high values are shown dark. */
  invert: boolean;
}

export async function decodeModalityPixels(bytes: Buffer, opts: { maxPixels: number }): Promise<ModalityPixels> {
  const { parsed, pixels } = await decodeDicom(bytes, opts);
  if (pixels.samplesPerPixel !== 1) {
    throw new ImageDecodeError('unsupported_encoding', 'This DICOM image is in colour: window/level applies to grayscale images only.');
  }
  const display = readDisplayAttributes(parsed.dataSet, pixels.signed);
  const { slope, intercept } = display;
  const values = pixels.pixels;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let integral = Number.isInteger(slope) && Number.isInteger(intercept);
  const modality = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i]! * slope + intercept;
    modality[i] = v;
    if (v < min) min = v;
    if (v > max) max = v;
    if (integral && !Number.isInteger(v)) integral = false;
  }
  if (values.length === 0) min = max = 0;
  const fitsInt16 = integral && min >= -32768 && max <= 32767;
  let window = display.window ? { center: display.window.center, width: display.window.width } : null;
  if (!window) {
    const range = percentileRange(values, display.paddingValue);
    const ends = range ? [range[0] * slope + intercept, range[1] * slope + intercept] : [min, max];
    const low = Math.min(ends[0]!, ends[1]!);
    const high = Math.max(ends[0]!, ends[1]!);
    window = { center: (low + high) / 2, width: Math.max(1, high - low) };
  }
  return {
    width: pixels.columns,
    height: pixels.rows,
    format: fitsInt16 ? 'int16' : 'float32',
    data: fitsInt16 ? Int16Array.from(modality) : modality,
    window,
    min,
    max,
    invert: (pixels.photometricInterpretation === 'MONOCHROME1') !== display.inverse,
  };
}
