/**
 * Upload decoding off the event loop: a small pool of worker threads runs decodeUpload, with
 * a time limit, so one hostile or huge file can neither stall other requests nor hang its
 * own. Everything a decoder throws becomes an ImageDecodeError with a message for the user.
 *
 * A JPEG or PNG that is only checked (nothing encoded) stays on the calling thread: sharp hands
 * that work to libvips on libuv's thread pool, where it runs whether it is called from here or
 * from a decoder thread, so a decoder thread would only add its hand-over and its own start-up
 * (docs/benchmarks/pipeline.md, 2026-12-06 13:50-14:40: ~2-4 ms of CPU per 224 px scan in the
 * API). libvips' own time limit bounds it (src/imaging/raster.ts), as long as DECODE_TIMEOUT_MS's default.
 */
import os from 'node:os';

import { Piscina } from 'piscina';

import type { DecodeTask, DecodeTaskResult } from './decode.thread.js';
import type { ModalityPixels } from './dicom/modality.js';
import { ImageDecodeError } from './errors.js';
import { checkImage, type CheckedImage, type DecodedImage } from './index.js';
import type { ImageKind } from './sniff.js';
import type { HeatmapMap } from '../ml/heatmap.js';
import { siblingModuleUrl } from '../platform/threads.js';

export interface ImageDecoder {
  /**
   * With `handOver`, the caller gives up `bytes` (they are moved to the decoder's thread, not
   * copied, when they own their memory, and read as empty afterwards). With `withPixels`, the
   * display image's pixels come back too.
   */
  decode(bytes: Buffer, opts: { maxPixels: number; thumbnailPx?: number; handOver?: boolean; withPixels?: boolean }): Promise<DecodedImage>;
  /**
   * The whole file decoded to check it (a truncated or damaged one fails as `decode` fails), and
   * nothing encoded or kept: an upload's check (src/imaging checkImage). `kind` is what the upload
   * was sniffed as (sniffImageKind), not sniffed again. `handOver` as for decode.
   */
  check(bytes: Buffer, opts: { maxPixels: number; kind: ImageKind; handOver?: boolean }): Promise<CheckedImage>;
  /** A DICOM image's pixel values in modality units, for window/level in the viewer. */
  modalityPixels(bytes: Buffer, opts: { maxPixels: number }): Promise<ModalityPixels>;
  /** The heatmap PNG of an analysis's map over the scan's display PNG (src/ml/heatmap.ts renderHeatmap). */
  renderHeatmap(displayPng: Buffer, map: HeatmapMap, opts: { maxPixels: number }): Promise<Buffer>;
  close(): Promise<void>;
}

export interface ImageDecoderOptions {
  /** A decode still running after this long is stopped (its thread is terminated). */
  timeoutMs: number;
  threads?: number;
  /** Called with what a decoder threw that was not an ImageDecodeError (a decoder bug). */
  onInternalError?: (message: string) => void;
}

/**
 * Bytes the thread may own: the caller's memory itself when handed over and not shared (a
 * Buffer that is a slice of Node's pool shares its memory with others), else one copy.
 */
function movable(bytes: Buffer, handOver: boolean): Uint8Array {
  if (handOver && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) {
    return new Uint8Array(bytes.buffer);
  }
  return new Uint8Array(bytes);
}

export function createImageDecoder({ timeoutMs, threads, onInternalError }: ImageDecoderOptions): ImageDecoder {
  const pool = new Piscina<DecodeTask, DecodeTaskResult>({
    filename: siblingModuleUrl(import.meta.url, 'decode.thread'),
    minThreads: 0,
    maxThreads: threads ?? Math.max(1, Math.min(4, os.availableParallelism())),
    idleTimeout: 60_000,
  });
  async function run(task: DecodeTask): Promise<DecodeTaskResult & { ok: true }> {
    let outcome: DecodeTaskResult;
    try {
      // The bytes are the task's own (see movable): moved to the thread, not cloned again.
      outcome = await pool.run(task, { signal: AbortSignal.timeout(timeoutMs), transferList: [task.bytes.buffer as ArrayBuffer] });
    } catch (err) {
      if ((err as Error).name === 'AbortError' || (err as Error).name === 'TimeoutError') {
        throw new ImageDecodeError(
          'corrupt',
          `The image could not be decoded within ${Math.round(timeoutMs / 1000)} seconds; the file may be damaged or unusually complex.`,
          true,
        );
      }
      throw err;
    }
    if (outcome.ok) return outcome;
    if (outcome.code === 'internal') {
      onInternalError?.(outcome.message);
      throw new ImageDecodeError('corrupt', 'The file could not be read as an image: it may be damaged or use a variant this server does not support.');
    }
    throw new ImageDecodeError(outcome.code, outcome.message);
  }
  return {
    async decode(bytes, { maxPixels, thumbnailPx, handOver = false, withPixels = false }) {
      const outcome = await run({ bytes: movable(bytes, handOver), maxPixels, thumbnailPx, withPixels });
      if (!('image' in outcome)) throw new Error('decoder thread answered the wrong task');
      const { image } = outcome;
      // Buffers arrive from the thread as plain Uint8Arrays.
      const asBuffer = (a: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
      return { ...image, png: asBuffer(image.png), ...(image.thumbnail ? { thumbnail: asBuffer(image.thumbnail) } : {}) };
    },
    async check(bytes, { maxPixels, kind, handOver = false }) {
      if (kind !== 'dicom') return checkImage(bytes, { maxPixels, kind });
      const outcome = await run({ bytes: movable(bytes, handOver), maxPixels, kind, mode: 'check' });
      if (!('checked' in outcome)) throw new Error('decoder thread answered the wrong task');
      return outcome.checked;
    },
    async modalityPixels(bytes, { maxPixels }) {
      const outcome = await run({ bytes: movable(bytes, false), maxPixels, mode: 'modality' });
      if (!('modality' in outcome)) throw new Error('decoder thread answered the wrong task');
      return outcome.modality;
    },
    async renderHeatmap(displayPng, map, { maxPixels }) {
      const outcome = await run({ bytes: movable(displayPng, false), maxPixels, map, mode: 'heatmap' });
      if (!('heatmap' in outcome)) throw new Error('decoder thread answered the wrong task');
      const { buffer, byteOffset, byteLength } = outcome.heatmap;
      return Buffer.from(buffer, byteOffset, byteLength);
    },
    close: () => pool.destroy(),
  };
}
