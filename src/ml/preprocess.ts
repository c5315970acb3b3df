/**
 * Serving side of the one preprocessing spec (ml/preprocessing.json, copied into every model
 * manifest). It must stay numerically identical to ml/common.py `load_pixels` +
 * `preprocess_batch`; src/ml/parity.test.ts checks that against PyTorch.
 */
import sharp from 'sharp';

import type { RawImage } from '../imaging/pixels.js';
import { decodePlainPng } from '../imaging/png.js';
import { PermanentAnalysisError } from './errors.js';

export interface PreprocessingSpec {
  width: number;
  height: number;
  channels: number;
  grayscale: 'mean-rgb';
  resize: 'fill';
  mean: number;
  std: number;
}

export interface PreprocessedImage {
  /** Normalised model input, NCHW [1, 1, height, width]. */
  tensor: Float32Array;
  /** Spatial size of the model input (the spec's width and height). */
  width: number;
  height: number;
  /** The resized image as interleaved 8-bit RGB, for the input checks. */
  rgb: Uint8Array;
  /** The resized grayscale (mean of R, G, B, rounded), width x height. */
  gray: Uint8Array;
  /**
   * R + G + B of each pixel of the resized image: the tensor, the gray, the input checks and the
   * router all depend on a pixel through it, so it is summed once here for all of them.
   */
  channelSums: Uint16Array;
  /** The image as given, in grayscale at its own size: the base of the heatmap overlay. */
  source: { width: number; height: number; gray: Uint8Array };
}

export interface PreprocessOptions {
  /** Refuse to decode images with more pixels than this (decompression bombs). */
  maxPixels?: number;
}

/** Validates the spec so a manifest from a newer trainer fails loudly instead of silently. */
export function parsePreprocessingSpec(raw: unknown): PreprocessingSpec {
  const s = raw as Partial<PreprocessingSpec> | null;
  const positive = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;
  if (
    !s ||
    !positive(s.width) ||
    !positive(s.height) ||
    s.channels !== 1 ||
    s.grayscale !== 'mean-rgb' ||
    s.resize !== 'fill' ||
    typeof s.mean !== 'number' ||
    !positive(s.std)
  ) {
    throw new Error(`unsupported preprocessing spec: ${JSON.stringify(raw)}`);
  }
  return {
    width: s.width,
    height: s.height,
    channels: 1,
    grayscale: 'mean-rgb',
    resize: 'fill',
    mean: s.mean,
    std: s.std,
  };
}

/** R + G + B of an 8-bit pixel is one of 766 values, so every per-pixel step below is a table read. */
const CHANNEL_SUMS = 3 * 255 + 1;

/** The tensor value of each channel sum, per (mean, std): a few specs per process. */
const tensorTables = new Map<string, Float32Array>();

/**
 * Channel sums -> normalised tensor, step by step in float32 as PyTorch does it
 * (`sums.float() / 3.0`, `/ 255.0`, `- mean`, `/ std`), so the two sides agree to the last bit
 * or nearly so. The value depends on the sum alone, so it is computed once per sum, not per pixel.
 */
function tensorTable(spec: PreprocessingSpec): Float32Array {
  const key = `${spec.mean}/${spec.std}`;
  let table = tensorTables.get(key);
  if (!table) {
    const f = Math.fround;
    const mean = f(spec.mean);
    const std = f(spec.std);
    table = new Float32Array(CHANNEL_SUMS);
    for (let sum = 0; sum < CHANNEL_SUMS; sum++) table[sum] = f(f(f(f(sum / 3) / 255) - mean) / std);
    tensorTables.set(key, table);
  }
  return table;
}

export function tensorFromRgb(rgb: Uint8Array, spec: PreprocessingSpec): Float32Array {
  const n = spec.width * spec.height;
  if (rgb.length !== n * 3) throw new Error(`expected ${n * 3} RGB bytes, got ${rgb.length}`);
  return tensorFromSums(channelSumsOf(rgb, n), spec);
}

function tensorFromSums(sums: Uint16Array, spec: PreprocessingSpec): Float32Array {
  const table = tensorTable(spec);
  const out = new Float32Array(sums.length);
  for (let i = 0; i < sums.length; i++) out[i] = table[sums[i]!]!;
  return out;
}

/** R + G + B of each of `pixels` interleaved RGB pixels (at most 765: exact in 16 bits). */
export function channelSumsOf(rgb: Uint8Array, pixels: number): Uint16Array {
  const sums = new Uint16Array(pixels);
  for (let i = 0, j = 0; i < pixels; i++, j += 3) sums[i] = rgb[j]! + rgb[j + 1]! + rgb[j + 2]!;
  return sums;
}

/** The rounded mean of each channel sum. */
const GRAY_OF_SUM = Uint8Array.from({ length: CHANNEL_SUMS }, (_, sum) => Math.round(sum / 3));

function grayFromRgb(rgb: Uint8Array, pixels: number): Uint8Array {
  const gray = new Uint8Array(pixels);
  for (let i = 0, j = 0; i < pixels; i++, j += 3) gray[i] = GRAY_OF_SUM[rgb[j]! + rgb[j + 1]! + rgb[j + 2]!]!;
  return gray;
}

/** Decode to 8-bit sRGB with alpha dropped, at the image's own size. */
async function decodeRgb(image: Buffer, maxPixels: number): Promise<{ data: Buffer; width: number; height: number }> {
  try {
    const { data, info } = await sharp(image, { limitInputPixels: maxPixels, failOn: 'error' })
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || data.length !== info.width * info.height * 3) {
      throw new Error(`decoder gave ${info.channels} channels`);
    }
    return { data, width: info.width, height: info.height };
  } catch (err) {
    throw new PermanentAnalysisError('unreadable_image', `The file could not be read as an image (${(err as Error).message})`);
  }
}

/**
 * Already decoded 8-bit pixels as decodeRgb gives them: three channels as they are, a grayscale
 * value copied into all three (what decoding a one-channel PNG to sRGB does), so a scan's model
 * input is the same whether it starts from its display PNG or from the pixels that PNG holds.
 */
function rgbOfPixels(pixels: RawImage): { data: Uint8Array; width: number; height: number } {
  const { data, width, height, channels } = pixels;
  const n = width * height;
  if (data.length !== n * channels) throw new Error(`expected ${n * channels} bytes of pixels, got ${data.length}`);
  if (channels === 3) return { data, width, height };
  const rgb = new Uint8Array(n * 3);
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    const v = data[i]!;
    rgb[j] = v;
    rgb[j + 1] = v;
    rgb[j + 2] = v;
  }
  return { data: rgb, width, height };
}

/**
 * An image file (the display PNG) in grayscale at its own size, decoded as preprocessImage
 * decodes it: the `source` the analysis drew its heatmap over, for the heatmap rendered later.
 */
export async function grayOfImage(image: Buffer, maxPixels: number): Promise<{ width: number; height: number; gray: Uint8Array }> {
  const plain = decodePlainPng(image, maxPixels);
  const { data, width, height } = plain ? rgbOfPixels(plain) : await decodeRgb(image, maxPixels);
  return { width, height, gray: grayFromRgb(data, width * height) };
}

/**
 * Image -> model input. The image is an image file (PNG or JPEG), or its pixels already
 * decoded (the worker's render of a DICOM scan); a file is decoded in full first and then
 * resized, as Pillow does in training (no JPEG shrink-on-load), with a linear kernel to match
 * Pillow's bilinear filter; the dataset images are already at the spec size, so for them the
 * resize is skipped and the tensor is exact.
 */
export async function preprocessImage(
  image: Buffer | RawImage,
  spec: PreprocessingSpec,
  options: PreprocessOptions = {},
): Promise<PreprocessedImage> {
  const maxPixels = options.maxPixels ?? 100_000_000;
  let decoded: { data: Uint8Array; width: number; height: number };
  if (Buffer.isBuffer(image)) {
    // A display PNG (the worker's usual input) is read here on this thread; a JPEG, or a PNG
    // with anything sharp would treat differently, goes to sharp as before.
    const plain = decodePlainPng(image, maxPixels);
    decoded = plain ? rgbOfPixels(plain) : await decodeRgb(image, maxPixels);
  } else decoded = rgbOfPixels(image);
  const { width, height } = spec;
  let rgb: Uint8Array = decoded.data;
  if (decoded.width !== width || decoded.height !== height) {
    rgb = await sharp(decoded.data, { raw: { width: decoded.width, height: decoded.height, channels: 3 } })
      .resize(width, height, { fit: 'fill', kernel: 'linear' })
      .raw()
      .toBuffer();
  }
  // One pass for the three per-pixel arrays the rest of the analysis reads.
  const n = width * height;
  const channelSums = new Uint16Array(n);
  const gray = new Uint8Array(n);
  const tensor = new Float32Array(n);
  const toTensor = tensorTable(spec);
  for (let i = 0, j = 0; i < n; i++, j += 3) {
    const sum = rgb[j]! + rgb[j + 1]! + rgb[j + 2]!;
    channelSums[i] = sum;
    gray[i] = GRAY_OF_SUM[sum]!;
    tensor[i] = toTensor[sum]!;
  }
  return {
    tensor,
    width,
    height,
    rgb,
    gray,
    channelSums,
    source: {
      width: decoded.width,
      height: decoded.height,
      // An image already at the spec size (the datasets' are) is its own resized image.
      gray: rgb === decoded.data ? gray : grayFromRgb(decoded.data, decoded.width * decoded.height),
    },
  };
}
