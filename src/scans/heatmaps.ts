/**
 * An analysis's heatmap PNG. The analysis keeps the explained class's map (7 x 7 floats) with
 * its result and stores no PNG: the first reader of the heatmap link (or the first report)
 * draws it over the scan's display image and stores it at the key the analysis row names, so a
 * burst of analyses encodes and writes no heatmap nobody may look at (docs/benchmarks/pipeline.md,
 * 2026-12-06 "heatmaps on first read"). The drawing is renderHeatmap in src/ml/heatmap.ts over
 * the display PNG decoded as the analysis decoded its image: the bytes the analysis itself would
 * have stored. An analysis from before maps were kept has its PNG stored and no map.
 * Renders of one heatmap through one instance are shared (the app context holds one, for the file
 * routes and reports alike);
 * two instances or processes rendering the same heatmap at once each store the same bytes (storage
 * puts replace whole files, never seen half-written).
 */
import type { ImageDecoder } from '../imaging/decoder.js';
import type { Db } from '../platform/db/index.js';
import { isWholeMap } from '../ml/heatmap.js';
import type { HeatmapMap } from '../platform/db/schema.js';
import { StorageNotFoundError, type Storage } from '../platform/storage/index.js';
import type { RenditionSource, ScanRenditions } from './renditions.js';
import { heatmapMapAt } from './repository.js';
import { removeStoredFiles } from './stored-files.js';

export interface ScanHeatmaps {
  /**
   * The heatmap PNG stored at `key` for one of the scan's analyses, drawn from that analysis's
   * map and stored first when it is not there yet. `map`: the analysis's map when the caller
   * has its row (else it is looked up). Throws StorageNotFoundError when there is neither a
   * file nor a map, ImageDecodeError when the display image cannot be decoded.
   */
  read(scan: RenditionSource, key: string, map?: HeatmapMap | null): Promise<Buffer>;
}

export function createScanHeatmaps({
  db,
  storage,
  renditions,
  imaging,
  maxPixels,
}: {
  db: Db;
  storage: Storage;
  renditions: ScanRenditions;
  imaging: Pick<ImageDecoder, 'renderHeatmap'>;
  maxPixels: number;
}): ScanHeatmaps {
  /** Renders in progress through this instance, by storage key. */
  const rendering = new Map<string, Promise<Buffer>>();

  async function render(scan: RenditionSource, key: string, map: HeatmapMap): Promise<Buffer> {
    // Checked here, not in the decoder's thread, whose failures read as an undecodable image (422).
    if (!isWholeMap(map)) throw new Error(`the heatmap map of ${key} does not match its size`);
    const image = await renditions.read(scan, 'image');
    const png = await imaging.renderHeatmap(image, map, { maxPixels });
    await storage.put(key, png, 'image/png');
    // A scan deleted while its heatmap was drawn took its files with it; this one must follow.
    if (!(await storage.exists(scan.originalKey))) await removeStoredFiles(storage, { id: scan.id, keys: [key] });
    return png;
  }

  return {
    async read(scan, key, known) {
      const pending = rendering.get(key);
      if (pending) return pending;
      try {
        return await storage.get(key);
      } catch (err) {
        if (!(err instanceof StorageNotFoundError)) throw err;
      }
      // Looked up only on a miss: a stored heatmap (every read after the first) costs no query.
      const map = known ?? (await heatmapMapAt(db, scan.id, key));
      if (!map) throw new StorageNotFoundError(`no heatmap at ${key}`);
      let started = rendering.get(key);
      if (!started) {
        started = render(scan, key, map).finally(() => rendering.delete(key));
        rendering.set(key, started);
      }
      return started;
    },
  };
}
