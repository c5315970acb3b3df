/**
 * A scan's display image and thumbnail. An upload stores only the original when its header
 * checks pass (DICOM: src/imaging inspectDicom); both PNGs are rendered later from it, by the
 * analysis worker before the model runs, or by the first reader of an image link that comes
 * sooner, whichever asks first. Renders of one scan in this process are shared; two processes
 * rendering the same scan at once each store the same bytes (storage puts replace whole files).
 */
import type { ImageDecoder } from '../imaging/decoder.js';
import { ImageDecodeError } from '../imaging/errors.js';
import type { ScanRow } from '../access/index.js';
import { StorageNotFoundError, type Storage } from '../platform/storage/index.js';
import { scanFilesPrefix } from './stored-files.js';

export const THUMBNAIL_PX = 256;

type RenditionSource = Pick<ScanRow, 'id' | 'originalKey' | 'imageKey' | 'thumbnailKey'>;

export interface ScanRenditions {
  /**
   * The stored display PNG ('image') or thumbnail, rendered from the original and stored first
   * when it is not there yet. Throws ImageDecodeError when the original cannot be decoded.
   */
  read(scan: RenditionSource, which: 'image' | 'thumbnail'): Promise<Buffer>;
}

interface Rendered {
  image: Buffer;
  thumbnail: Buffer;
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
  async function render(scan: RenditionSource): Promise<Rendered> {
    const original = await storage.get(scan.originalKey);
    const decoded = await imaging.decode(original, { maxPixels, thumbnailPx: THUMBNAIL_PX, handOver: true });
    if (!decoded.thumbnail) throw new Error('the decoder made no thumbnail');
    // The thumbnail first: the display image is what says "rendered" to the next reader.
    await storage.put(scan.thumbnailKey, decoded.thumbnail, 'image/png');
    await storage.put(scan.imageKey, decoded.png, 'image/png');
    // A scan deleted while it was rendered took its files with it; these two must follow, or they
    // would stay behind as orphans. (A deletion after this check removes them itself.)
    if (!(await storage.exists(scan.originalKey))) await storage.deletePrefix(scanFilesPrefix(scan.id));
    return { image: decoded.png, thumbnail: decoded.thumbnail };
  }

  function renderOnce(scan: RenditionSource): Promise<Rendered> {
    let pending = rendering.get(scan.id);
    if (!pending) {
      pending = render(scan)
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

  return {
    async read(scan, which) {
      const known = undecodable.get(scan.id);
      if (known) throw known;
      const pending = rendering.get(scan.id);
      if (pending) return (await pending)[which];
      try {
        return await storage.get(which === 'image' ? scan.imageKey : scan.thumbnailKey);
      } catch (err) {
        if (!(err instanceof StorageNotFoundError)) throw err;
      }
      return (await renderOnce(scan))[which];
    },
  };
}
