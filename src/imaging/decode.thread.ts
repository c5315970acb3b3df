/**
 * decodeUpload inside a worker thread of the pool in decoder.ts. DICOM codecs are WASM and
 * pure-JS loops that run synchronously: a large JPEG 2000 would otherwise stall the API. The
 * heatmap drawn on its first read (a decode, a resize and a PNG encode per pixel) runs here too.
 */
import { decodeModalityPixels, type ModalityPixels } from './dicom/modality.js';
import { checkImage, decodeUpload, type CheckedImage, type DecodedImage } from './index.js';
import { describeThrown, ImageDecodeError, type ImageDecodeErrorCode } from './errors.js';
import type { ImageKind } from './sniff.js';
import { renderHeatmap, type HeatmapMap } from '../ml/heatmap.js';
import { grayOfImage } from '../ml/preprocess.js';

export interface DecodeTask {
  bytes: Uint8Array;
  maxPixels: number;
  /** With 'display': also a thumbnail this many pixels on its longer side. */
  thumbnailPx?: number;
  /** With 'display': also the display image's pixels. */
  withPixels?: boolean;
  /** With 'check': what the caller sniffed the bytes as (not sniffed again). */
  kind?: ImageKind;
  /** With 'heatmap': the analysis's map, drawn over `bytes` (the scan's display PNG). */
  map?: HeatmapMap;
  /**
   * 'display' (default): the upload's PNG; 'check': the file decoded whole, nothing encoded or
   * returned but its size; 'modality': a DICOM's pixel values for window/level; 'heatmap': the
   * heatmap PNG of `map` over the display image.
   */
  mode?: 'display' | 'check' | 'modality' | 'heatmap';
}

/** Errors do not keep their class across threads, so the outcome carries the code. */
export type DecodeTaskResult =
  | { ok: true; image: DecodedImage }
  | { ok: true; checked: CheckedImage }
  | { ok: true; modality: ModalityPixels }
  | { ok: true; heatmap: Uint8Array }
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
      case 'heatmap':
        if (!task.map) throw new Error('no map to draw');
        return { ok: true, heatmap: renderHeatmap(task.map, await grayOfImage(bytes, maxPixels)) };
      case 'display':
        return { ok: true, image: await decodeUpload(bytes, { maxPixels, thumbnailPx: task.thumbnailPx, withPixels: task.withPixels }) };
    }
  } catch (err) {
    if (err instanceof ImageDecodeError) return { ok: false, code: err.code, message: err.message };
    return { ok: false, code: 'internal', message: describeThrown(err) };
  }
}
