/**
 * decodeUpload inside a worker thread of the pool in decoder.ts. DICOM codecs are WASM and
 * pure-JS loops that run synchronously: a large JPEG 2000 would otherwise stall the API.
 */
import { decodeModalityPixels, type ModalityPixels } from './dicom/modality.js';
import { decodeUpload, type DecodedImage } from './index.js';
import { describeThrown, ImageDecodeError, type ImageDecodeErrorCode } from './errors.js';

export interface DecodeTask {
  bytes: Uint8Array;
  maxPixels: number;
  /** With 'display': also a thumbnail this many pixels on its longer side. */
  thumbnailPx?: number;
  /** With 'display': also the display image's pixels. */
  withPixels?: boolean;
  /** 'display' (default): the upload's PNG; 'modality': a DICOM's pixel values for window/level. */
  mode?: 'display' | 'modality';
}

/** Errors do not keep their class across threads, so the outcome carries the code. */
export type DecodeTaskResult =
  | { ok: true; image: DecodedImage }
  | { ok: true; modality: ModalityPixels }
  | { ok: false; code: ImageDecodeErrorCode | 'internal'; message: string };

export default async function decodeInThread(task: DecodeTask): Promise<DecodeTaskResult> {
  try {
    const bytes = Buffer.from(task.bytes.buffer, task.bytes.byteOffset, task.bytes.byteLength);
    if (task.mode === 'modality') return { ok: true, modality: await decodeModalityPixels(bytes, { maxPixels: task.maxPixels }) };
    return { ok: true, image: await decodeUpload(bytes, { maxPixels: task.maxPixels, thumbnailPx: task.thumbnailPx, withPixels: task.withPixels }) };
  } catch (err) {
    if (err instanceof ImageDecodeError) return { ok: false, code: err.code, message: err.message };
    return { ok: false, code: 'internal', message: describeThrown(err) };
  }
}
