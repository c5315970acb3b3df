/**
 * decodeUpload inside a worker thread of the pool in decoder.ts. DICOM codecs are WASM and
 * pure-JS loops that run synchronously: a large JPEG 2000 would otherwise stall the API.
 */
import { decodeModalityPixels, type ModalityPixels } from './dicom/modality.js';
import { checkImage, decodeUpload, type CheckedImage, type DecodedImage } from './index.js';
import { describeThrown, ImageDecodeError, type ImageDecodeErrorCode } from './errors.js';
import type { ImageKind } from './sniff.js';

export interface DecodeTask {
  bytes: Uint8Array;
  maxPixels: number;
  /** With 'display': also a thumbnail this many pixels on its longer side. */
  thumbnailPx?: number;
  /** With 'display': also the display image's pixels. */
  withPixels?: boolean;
  /** With 'check': what the caller sniffed the bytes as (not sniffed again). */
  kind?: ImageKind;
  /**
   * 'display' (default): the upload's PNG; 'check': the file decoded whole, nothing encoded or
   * returned but its size; 'modality': a DICOM's pixel values for window/level.
   */
  mode?: 'display' | 'check' | 'modality';
}

/** Errors do not keep their class across threads, so the outcome carries the code. */
export type DecodeTaskResult =
  | { ok: true; image: DecodedImage }
  | { ok: true; checked: CheckedImage }
  | { ok: true; modality: ModalityPixels }
  | { ok: false; code: ImageDecodeErrorCode | 'internal'; message: string };

export default async function decodeInThread(task: DecodeTask): Promise<DecodeTaskResult> {
  try {
    const bytes = Buffer.from(task.bytes.buffer, task.bytes.byteOffset, task.bytes.byteLength);
    const { maxPixels } = task;
    switch (task.mode ?? 'display') {
      case 'modality':
        return { ok: true, modality: await decodeModalityPixels(bytes, { maxPixels }) };
      case 'check':
        return { ok: true, checked: await checkImage(bytes, { maxPixels, kind: task.kind }) };
      case 'display':
        return { ok: true, image: await decodeUpload(bytes, { maxPixels, thumbnailPx: task.thumbnailPx, withPixels: task.withPixels }) };
    }
  } catch (err) {
    if (err instanceof ImageDecodeError) return { ok: false, code: err.code, message: err.message };
    return { ok: false, code: 'internal', message: describeThrown(err) };
  }
}
