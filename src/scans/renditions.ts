/**
 * A scan's display image and thumbnail. An upload stores only the original once its checks
 * pass (DICOM: its header, src/imaging inspectDicom; JPEG and PNG: decoded whole, nothing
 * encoded); both PNGs are rendered later from it and stored, by the first reader of an image
 * link, or for a DICOM original by the analysis worker before the model runs if it comes
 * first. The analysis of a JPEG or PNG original hands the original to the analyzer, which
 * decodes its pixels for the model in its own thread, and stores nothing: a burst of uploads
 * is analysed without writing two PNGs per scan that nobody may look at, and a reader's render
 * later costs what the upload's used to (one decode, two PNGs).
 * Renders of one scan in this process are shared; two processes rendering the same scan at once
 * each store the same bytes (storage puts replace whole files).
 */
import type { ImageDecoder } from '../imaging/decoder.js';
import { ImageDecodeError } from '../imaging/errors.js';
import type { RawImage } from '../imaging/pixels.js';
import type { ScanRow } from '../access/index.js';
import { StorageNotFoundError, type Storage } from '../platform/storage/index.js';
import { isRasterOriginal, removeStoredFiles } from './stored-files.js';

const THUMBNAIL_PX = 256;

export type RenditionSource = Pick<ScanRow, 'id' | 'originalKey' | 'imageKey' | 'thumbnailKey'>;

/**
 * A scan's display image as the analysis gets it: a JPEG or PNG original, whose pixels the
 * analyzer decodes as decodeDisplayPixels does, the pixels of the render it just made (or
 * joined), so they are not decoded again from the PNG, else the stored display PNG.
 */
export type ScanImage = { png: Buffer } | { pixels: RawImage } | { original: Buffer };

export interface ScanRenditions {
  /**
   * The stored display PNG ('image') or thumbnail, rendered from the original and stored first
   * when it is not there yet. Throws ImageDecodeError when the original cannot be decoded.
   */
  read(scan: RenditionSource, which: 'image' | 'thumbnail'): Promise<Buffer>;
  /**
   * The display image for the model. A JPEG or PNG original: the original itself, for the
   * analyzer to decode (in its thread), and nothing stored. A DICOM original: as
   * `read(scan, 'image')`, with the pixels when it renders.
   */
  readForAnalysis(scan: RenditionSource): Promise<ScanImage>;
}

interface Rendered {
  image: Buffer;
  thumbnail: Buffer;
  /** The display image's pixels, when the render was asked for them. */
  pixels?: RawImage;
}

/** Renders in progress in this process, by scan id. */
const rendering = new Map<string, Promise<Rendered>>();
/**
 * Scans whose original could not be decoded, with why: a link read again answers at once
 * instead of decoding the file again (up to DECODE_TIMEOUT_MS of a thread each time).
 */
const undecodable = new Map<string, ImageDecodeError>();
const MAX_UNDECODABLE = 1000;

export function createScanRenditions({
  storage,
  imaging,
  maxPixels,
}: {
  storage: Storage;
  imaging: Pick<ImageDecoder, 'decode'>;
  maxPixels: number;
}): ScanRenditions {
  async function render(scan: RenditionSource, withPixels: boolean): Promise<Rendered> {
    const original = await storage.get(scan.originalKey);
    const decoded = await imaging.decode(original, { maxPixels, thumbnailPx: THUMBNAIL_PX, handOver: true, withPixels });
    if (!decoded.thumbnail) throw new Error('the decoder made no thumbnail');
    // The thumbnail first: the display image is what says "rendered" to the next reader.
    await storage.put(scan.thumbnailKey, decoded.thumbnail, 'image/png');
    await storage.put(scan.imageKey, decoded.png, 'image/png');
    // A scan deleted while it was rendered took its files with it; these two must follow, or they
    // would stay behind as orphans. (A deletion after this check removes them itself.)
    if (!(await storage.exists(scan.originalKey))) {
      await removeStoredFiles(storage, { id: scan.id, keys: [scan.thumbnailKey, scan.imageKey] });
    }
    return { image: decoded.png, thumbnail: decoded.thumbnail, ...(decoded.pixels ? { pixels: decoded.pixels } : {}) };
  }

  function renderOnce(scan: RenditionSource, withPixels: boolean): Promise<Rendered> {
    let pending = rendering.get(scan.id);
    if (!pending) {
      pending = render(scan, withPixels)
        .catch((err: unknown) => {
          if (err instanceof ImageDecodeError && !err.transient) {
            if (undecodable.size >= MAX_UNDECODABLE) undecodable.clear();
            undecodable.set(scan.id, err);
          }
          throw err;
        })
        .finally(() => rendering.delete(scan.id));
      rendering.set(scan.id, pending);
    }
    return pending;
  }

  /** The stored rendition, or what a render in this process (running, or started here) made. */
  async function stored(scan: RenditionSource, which: 'image' | 'thumbnail', withPixels: boolean): Promise<Buffer | Rendered> {
    const known = undecodable.get(scan.id);
    if (known) throw known;
    const pending = rendering.get(scan.id);
    if (pending) return pending;
    try {
      return await storage.get(which === 'image' ? scan.imageKey : scan.thumbnailKey);
    } catch (err) {
      if (!(err instanceof StorageNotFoundError)) throw err;
    }
    return renderOnce(scan, withPixels);
  }

  return {
    async read(scan, which) {
      const found = await stored(scan, which, false);
      return Buffer.isBuffer(found) ? found : found[which];
    },
    async readForAnalysis(scan) {
      // The same pixels the display PNG holds or will hold (decoded the same way, and PNG is
      // lossless), so the model's answer does not depend on whether a reader rendered it first.
      if (isRasterOriginal(scan.originalKey)) {
        const known = undecodable.get(scan.id);
        if (known) throw known;
        const pending = rendering.get(scan.id);
        if (pending) {
          const rendered = await pending;
          return rendered.pixels ? { pixels: rendered.pixels } : { png: rendered.image };
        }
        return { original: await storage.get(scan.originalKey) };
      }
      const found = await stored(scan, 'image', true);
      if (Buffer.isBuffer(found)) return { png: found };
      return found.pixels ? { pixels: found.pixels } : { png: found.image };
    },
  };
}
