/**
 * Upload decoding: from the bytes someone uploaded to an 8-bit PNG for display and the models,
 * plus the DICOM attributes we keep. Pure functions: no HTTP, no database, no logging.
 */
import { decodeDicom, DEFAULT_MAX_PIXELS } from './dicom/pixels.js';
import { readDisplayAttributes, renderForDisplay } from './dicom/render.js';
import type { DicomInfo } from './dicom/info.js';
import { ImageDecodeError } from './errors.js';
import { encodePng, thumbnailPng, type RawImage } from './pixels.js';
import { decodePlainJpeg } from './jpeg.js';
import { checkRaster, decodeRaster } from './raster.js';
import { sniffImageKind, type ImageKind } from './sniff.js';

export { ImageDecodeError } from './errors.js';
export { sniffImageKind } from './sniff.js';
export { inferScanType } from './scan-type.js';
export { decodeDicomPixels, inspectDicom, inspectDicomHead, type DicomPixels } from './dicom/pixels.js';
export { inspectRaster } from './raster.js';
export type { DicomInfo } from './dicom/info.js';

export interface DecodedImage {
  kind: ImageKind;
  /** 8-bit PNG: grayscale, or RGB for colour images. */
  png: Buffer;
  width: number;
  height: number;
  dicom?: DicomInfo;
  /** A PNG at most `thumbnailPx` on its longer side, when asked for. */
  thumbnail?: Buffer;
  /** The pixels `png` holds, when asked for (`withPixels`): the analysis starts from them. */
  pixels?: RawImage;
}

export interface DecodeOptions {
  /** Largest image accepted, in pixels (of the one frame decoded from a DICOM file). Default 50 000 000. */
  maxPixels?: number;
  /** Also render a thumbnail this many pixels on its longer side (never enlarged). */
  thumbnailPx?: number;
  /** Also return the display image's pixels. */
  withPixels?: boolean;
}

/** What decoding a whole file found, when nothing is kept of its pixels (checkImage). */
export interface CheckedImage {
  kind: ImageKind;
  /** The size of its display image. */
  width: number;
  height: number;
  dicom?: DicomInfo;
}

/**
 * An upload's file decoded whole to check it, and nothing encoded or kept: its display image
 * and thumbnail are rendered later, from the stored original, by whoever needs them first
 * (src/scans/renditions.ts). Fails as decodeUpload fails, with the same messages. `kind` is what
 * the caller sniffed the bytes as (an upload is sniffed once, as it arrives); sniffed here without.
 */
export async function checkImage(bytes: Buffer, opts: Pick<DecodeOptions, 'maxPixels'> & { kind?: ImageKind } = {}): Promise<CheckedImage> {
  const maxPixels = checkedMaxPixels(opts);
  const kind = opts.kind ?? knownKind(bytes);
  if (kind === 'jpeg' || kind === 'png') return { kind, ...(await checkRaster(bytes, kind, maxPixels)) };
  const { pixels, dicom } = await decodeForDisplay(bytes, opts, kind);
  return { kind, width: pixels.width, height: pixels.height, ...(dicom ? { dicom } : {}) };
}

/** The display image's pixels, without encoding a PNG of them: what the analysis starts from. */
export async function decodeDisplayPixels(bytes: Buffer, opts: Pick<DecodeOptions, 'maxPixels'> = {}): Promise<RawImage> {
  return (await decodeForDisplay(bytes, opts)).pixels;
}

/**
 * decodeDisplayPixels for a JPEG or PNG original in an analyzer thread: the same pixels, a
 * plain JPEG decoded on this thread (src/imaging/jpeg.ts) instead of through sharp, whose
 * pipeline costs several times the decode at these sizes.
 */
export async function decodeOriginalPixels(bytes: Buffer, opts: Pick<DecodeOptions, 'maxPixels'> = {}): Promise<RawImage> {
  const kind = knownKind(bytes);
  if (kind === 'jpeg') {
    const pixels = await decodePlainJpeg(bytes, checkedMaxPixels(opts));
    if (pixels) return pixels;
  }
  // Sniffed once, above.
  return (await decodeForDisplay(bytes, opts, kind)).pixels;
}

/** The file decoded once; the PNG and the thumbnail are both encoded from its pixels. */
export async function decodeUpload(bytes: Buffer, opts: DecodeOptions = {}): Promise<DecodedImage> {
  const { kind, pixels, dicom } = await decodeForDisplay(bytes, opts);
  const png = await encodePng(pixels);
  // Made here, in the decoder's thread, rather than on the API's event loop after it.
  const thumbnail = opts.thumbnailPx === undefined ? undefined : await thumbnailPng(pixels, opts.thumbnailPx, png);
  return {
    kind,
    png,
    width: pixels.width,
    height: pixels.height,
    ...(dicom ? { dicom } : {}),
    ...(thumbnail ? { thumbnail } : {}),
    ...(opts.withPixels ? { pixels } : {}),
  };
}

function checkedMaxPixels(opts: DecodeOptions): number {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!Number.isSafeInteger(maxPixels) || maxPixels < 1) throw new RangeError('maxPixels must be a positive integer');
  return maxPixels;
}

function knownKind(bytes: Buffer): ImageKind {
  const kind = sniffImageKind(bytes);
  if (kind === null) throw new ImageDecodeError('unsupported_type', 'The file is not a JPEG, PNG or DICOM image.');
  return kind;
}

async function decodeForDisplay(bytes: Buffer, opts: DecodeOptions, kind = knownKind(bytes)): Promise<{ kind: ImageKind; pixels: RawImage; dicom?: DicomInfo }> {
  const maxPixels = checkedMaxPixels(opts);
  if (kind === 'jpeg' || kind === 'png') {
    return { kind, pixels: await decodeRaster(bytes, kind, maxPixels) };
  }
  const { parsed, info, pixels } = await decodeDicom(bytes, { maxPixels });
  const display = renderForDisplay(pixels, readDisplayAttributes(parsed.dataSet, pixels.signed));
  return { kind, pixels: display, dicom: info };
}
