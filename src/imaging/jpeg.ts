/**
 * Plain JPEGs decoded on the calling thread with libjpeg-turbo's WebAssembly build (the one the
 * DICOM codecs use), for the analysis worker's threads. sharp's decode of a 224 px JPEG costs
 * ~1.6 ms of CPU across the calling thread, libuv's pool and libvips' threads, most of it
 * setting up the pipeline; this one ~0.36 ms, on one thread (docs/benchmarks/pipeline.md,
 * 2026-12-06 16:42-17:07). libvips decodes with libjpeg-turbo too, with the same defaults (islow IDCT, fancy
 * upsampling), so the pixels are the same: every JPEG of both test datasets decodes to the
 * bytes decodeRaster gives (jpeg.test.ts). Anything that decodeRaster would change after
 * libjpeg (an EXIF orientation, an ICC profile sharp converts to sRGB, an Adobe transform,
 * CMYK) or that this build does not read (12 bits, lossless, arithmetic coding), and any file
 * the decoder does not take whole, is left to sharp: null.
 */
import sharp from 'sharp';

import type { RawImage } from './pixels.js';
import { decodeJpegBaseline } from './dicom/codecs.js';

/** Start of frame: baseline, extended sequential and progressive Huffman, the ones libjpeg's 8-bit build reads alike. */
const PLAIN_SOF = new Set([0xc0, 0xc1, 0xc2]);
/** Any other start of frame (lossless, hierarchical, arithmetic coding). */
const OTHER_SOF = new Set([0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

const startsWith = (bytes: Uint8Array, at: number, text: string) => {
  for (let i = 0; i < text.length; i++) if (bytes[at + i] !== text.charCodeAt(i)) return false;
  return true;
};

/** The frame of a plain JPEG from its markers up to the first scan; null for any other file. */
function plainJpegFrame(bytes: Uint8Array): { width: number; height: number; components: 1 | 3 } | null {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return null;
  let frame: { width: number; height: number; components: 1 | 3 } | null = null;
  for (let at = 2; at + 4 <= bytes.length; ) {
    if (bytes[at] !== 0xff) return null;
    const marker = bytes[at + 1]!;
    // Fill bytes before a marker.
    if (marker === 0xff) {
      at++;
      continue;
    }
    // A standalone marker (TEM, RSTn, SOI, EOI) has no place before the first scan.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd9)) return null;
    const length = (bytes[at + 2]! << 8) | bytes[at + 3]!;
    const body = at + 4;
    if (length < 2 || at + 2 + length > bytes.length) return null;
    if (marker === 0xda) return frame;
    if (OTHER_SOF.has(marker)) return null;
    if (PLAIN_SOF.has(marker)) {
      if (frame || length < 8) return null;
      const precision = bytes[body]!;
      const height = (bytes[body + 1]! << 8) | bytes[body + 2]!;
      const width = (bytes[body + 3]! << 8) | bytes[body + 4]!;
      const components = bytes[body + 5]!;
      if (precision !== 8 || width === 0 || height === 0 || (components !== 1 && components !== 3)) return null;
      frame = { width, height, components };
    }
    // EXIF (an orientation sharp applies), an ICC profile (converted to sRGB by sharp), Adobe's
    // colour transform marker.
    if (marker === 0xe1 && startsWith(bytes, body, 'Exif\0')) return null;
    if (marker === 0xe2 && startsWith(bytes, body, 'ICC_PROFILE\0')) return null;
    if (marker === 0xee && startsWith(bytes, body, 'Adobe')) return null;
    at += 2 + length;
  }
  return null;
}

/**
 * The pixels decodeRaster gives for a plain JPEG of at most `maxPixels` pixels, decoded on this
 * thread; null for any other file, a damaged one included, so the caller decodes it with sharp
 * (and gets sharp's error).
 */
export async function decodePlainJpeg(bytes: Uint8Array, maxPixels: number): Promise<RawImage | null> {
  const frame = plainJpegFrame(bytes);
  if (!frame || frame.width * frame.height > maxPixels) return null;
  try {
    const decoded = await decodeJpegBaseline(bytes);
    if (decoded.width !== frame.width || decoded.height !== frame.height || decoded.components !== frame.components || decoded.bytesPerSample !== 1) {
      return null;
    }
    return { data: decoded.data, width: decoded.width, height: decoded.height, channels: frame.components };
  } catch {
    return null;
  }
}

/**
 * Loads the decoder into this thread ahead of its first image and has V8 compile its hot code:
 * instantiating the WebAssembly module takes ~25 ms, and until V8 has optimised the decoder's
 * hot functions a decode costs several times its ~0.35 ms (1.2 ms of CPU a decode over the
 * first hundred after a single one, 0.33 ms after a hundred of a noisy 224 px image: ~0.2 s of
 * CPU once per thread, docs/benchmarks/pipeline.md 2026-12-06 16:42-17:07). A fresh worker's
 * first burst would otherwise pay it.
 */
export async function warmUpJpegDecoder(): Promise<void> {
  const noisy = await sharp({
    create: { width: 224, height: 224, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 40 } },
  })
    .jpeg()
    .toBuffer();
  for (let i = 0; i < 100; i++) await decodePlainJpeg(noisy, 224 * 224);
}
