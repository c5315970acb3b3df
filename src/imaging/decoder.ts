/**
 * Upload decoding off the event loop: a small pool of worker threads runs decodeUpload, with
 * a time limit, so one hostile or huge file can neither stall other requests nor hang its
 * own. Everything a decoder throws becomes an ImageDecodeError with a message for the user.
 */
import os from 'node:os';

import { Piscina } from 'piscina';

import type { DecodeTask, DecodeTaskResult } from './decode.thread.js';
import { ImageDecodeError } from './errors.js';
import type { DecodedImage } from './index.js';

export interface ImageDecoder {
  decode(bytes: Buffer, opts: { maxPixels: number }): Promise<DecodedImage>;
  close(): Promise<void>;
}

export interface ImageDecoderOptions {
  /** A decode still running after this long is stopped (its thread is terminated). */
  timeoutMs: number;
  threads?: number;
  /** Called with what a decoder threw that was not an ImageDecodeError (a decoder bug). */
  onInternalError?: (message: string) => void;
}

export function createImageDecoder({ timeoutMs, threads, onInternalError }: ImageDecoderOptions): ImageDecoder {
  const pool = new Piscina<DecodeTask, DecodeTaskResult>({
    filename: new URL('./decode.thread.ts', import.meta.url).href,
    minThreads: 0,
    maxThreads: threads ?? Math.max(1, Math.min(4, os.availableParallelism())),
    idleTimeout: 60_000,
  });
  return {
    async decode(bytes, { maxPixels }) {
      let outcome: DecodeTaskResult;
      try {
        outcome = await pool.run({ bytes: new Uint8Array(bytes), maxPixels }, { signal: AbortSignal.timeout(timeoutMs) });
      } catch (err) {
        if ((err as Error).name === 'AbortError' || (err as Error).name === 'TimeoutError') {
          throw new ImageDecodeError(
            'corrupt',
            `The image could not be decoded within ${Math.round(timeoutMs / 1000)} seconds; the file may be damaged or unusually complex.`,
          );
        }
        throw err;
      }
      if (outcome.ok) {
        const { image } = outcome;
        // Buffers arrive from the thread as plain Uint8Arrays.
        return { ...image, png: Buffer.from(image.png.buffer, image.png.byteOffset, image.png.byteLength) };
      }
      if (outcome.code === 'internal') {
        onInternalError?.(outcome.message);
        throw new ImageDecodeError('corrupt', 'The file could not be read as an image: it may be damaged or use a variant this server does not support.');
      }
      throw new ImageDecodeError(outcome.code, outcome.message);
    },
    close: () => pool.destroy(),
  };
}
