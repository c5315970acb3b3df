/**
 * The plain PNGs this server writes itself (8-bit grayscale or RGB, not interlaced), read and
 * written with node:zlib on the calling thread. A 224 px display PNG took ~1.5-1.9 ms of CPU
 * through sharp against ~0.75 ms here (load ~15): for an image this small libvips's pipeline
 * and the hand-off to libuv's pool cost more than the pixels. PNG is
 * lossless, so the pixels are the ones sharp reads and writes (png.test.ts compares them);
 * anything else (a palette, 16 bits, alpha, interlacing, a colour profile or gamma, a bad
 * checksum) is left to sharp.
 */
import zlib from 'node:zlib';

import type { RawImage } from './pixels.js';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * Chunks that do not change the decoded pixels (libvips reads them as metadata or not at all).
 * Any other chunk (gAMA, iCCP, sRGB, cHRM, sBIT, tRNS, PLTE...) sends the file to sharp.
 */
const IGNORED_CHUNKS = new Set(['pHYs', 'tEXt', 'zTXt', 'iTXt', 'tIME']);

const COLOUR_TYPE_CHANNELS: Record<number, 1 | 3 | undefined> = { 0: 1, 2: 3 };

/**
 * The pixels of a plain 8-bit grayscale or RGB PNG of at most `maxPixels` pixels; null for any
 * other file, a damaged one included, so the caller decodes it as before (and gets sharp's error).
 */
export function decodePlainPng(bytes: Uint8Array, maxPixels: number): RawImage | null {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 8 + 25 || !buf.subarray(0, 8).equals(SIGNATURE)) return null;
  let width = 0;
  let height = 0;
  let channels: 1 | 3 | undefined;
  const idat: Buffer[] = [];
  let ended = false;
  for (let at = 8; at < buf.length; ) {
    if (at + 12 > buf.length) return null;
    const length = buf.readUInt32BE(at);
    const end = at + 12 + length;
    if (end > buf.length) return null;
    if (zlib.crc32(buf.subarray(at + 4, at + 8 + length)) !== buf.readUInt32BE(at + 8 + length)) return null;
    const type = buf.toString('latin1', at + 4, at + 8);
    const data = buf.subarray(at + 8, at + 8 + length);
    if (at === 8) {
      // IHDR: width, height, bit depth 8, colour type 0 or 2, compression 0, filter 0, no interlace.
      if (type !== 'IHDR' || length !== 13) return null;
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      channels = COLOUR_TYPE_CHANNELS[data[9]!];
      if (data[8] !== 8 || !channels || data[10] !== 0 || data[11] !== 0 || data[12] !== 0) return null;
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      ended = true;
      break;
    } else if (!IGNORED_CHUNKS.has(type)) {
      return null;
    }
    at = end;
  }
  if (!ended || !channels || width === 0 || height === 0 || width * height > maxPixels || idat.length === 0) return null;
  const stride = width * channels;
  let filtered: Buffer;
  try {
    filtered = zlib.inflateSync(idat.length === 1 ? idat[0]! : Buffer.concat(idat));
  } catch {
    return null;
  }
  if (filtered.length !== (stride + 1) * height) return null;
  const data = unfilter(filtered, stride, height, channels);
  return data ? { data, width, height, channels } : null;
}

/** Undoes the per-row filters (PNG spec section 9); null on an unknown filter type. */
function unfilter(filtered: Uint8Array, stride: number, height: number, bpp: number): Uint8Array | null {
  const out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const from = y * (stride + 1) + 1;
    const row = y * stride;
    const up = row - stride;
    switch (filtered[from - 1]) {
      case 0:
        out.set(filtered.subarray(from, from + stride), row);
        break;
      case 1:
        for (let x = 0; x < stride; x++) out[row + x] = filtered[from + x]! + (x >= bpp ? out[row + x - bpp]! : 0);
        break;
      case 2:
        for (let x = 0; x < stride; x++) out[row + x] = filtered[from + x]! + (y > 0 ? out[up + x]! : 0);
        break;
      case 3:
        for (let x = 0; x < stride; x++) {
          const a = x >= bpp ? out[row + x - bpp]! : 0;
          const b = y > 0 ? out[up + x]! : 0;
          out[row + x] = filtered[from + x]! + ((a + b) >> 1);
        }
        break;
      case 4:
        for (let x = 0; x < stride; x++) {
          const a = x >= bpp ? out[row + x - bpp]! : 0;
          const b = y > 0 ? out[up + x]! : 0;
          const c = x >= bpp && y > 0 ? out[up + x - bpp]! : 0;
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          out[row + x] = filtered[from + x]! + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
        }
        break;
      default:
        return null;
    }
  }
  return out;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(zlib.crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/**
 * An 8-bit grayscale or RGB PNG of `pixels`: each row stored as its difference from the row
 * above (PNG's "Up" filter), deflated with Huffman codes only (Z_HUFFMAN_ONLY). On the test
 * sets' heatmaps (load ~13) that is 74 KiB in ~1.8-1.9 ms of CPU, against sharp's
 * `.png({ compressionLevel: 1 })` at 96 KiB in ~2.0 ms (its libvips has a faster zlib than
 * node's: node's level 1 on unfiltered rows is slower than sharp, and Z_RLE ~0.3 ms slower than
 * Huffman alone for 67 KiB). The gain is the smaller file and no hand-off to libuv's pool; the
 * pixels are the same either way.
 */
export function encodePlainPng({ data, width, height, channels }: RawImage): Buffer {
  const stride = width * channels;
  if (data.length !== stride * height) throw new Error(`expected ${stride * height} bytes of pixels, got ${data.length}`);
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8;
  header[9] = channels === 1 ? 0 : 2;
  const rows = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    const to = y * (stride + 1);
    const from = y * stride;
    rows[to] = 2;
    if (y === 0) rows.set(data.subarray(0, stride), 1);
    else for (let x = 0; x < stride; x++) rows[to + 1 + x] = data[from + x]! - data[from - stride + x]!;
  }
  const idat = zlib.deflateSync(rows, { level: 1, strategy: zlib.constants.Z_HUFFMAN_ONLY });
  return Buffer.concat([SIGNATURE, chunk('IHDR', header), chunk('IDAT', idat), chunk('IEND', new Uint8Array(0))]);
}
