/**
 * Where a scan's files live in storage, and their removal once the scan's rows are gone.
 *
 * Layout of new files: `scans/<first two hex digits of the scan id>/<scan id>.<name>`, e.g.
 * `scans/3f/3f2a...-....original.dcm`: 256 shard folders, each made once per process, instead
 * of a folder per scan (whose mkdir was ~12% of an upload's main thread on local storage).
 * Scans stored before this layout keep their keys, `scans/<scan id>/<name>`, in their rows; both
 * are read through the keys in the rows, and both are removed by them (a legacy scan's folder
 * goes with its prefix).
 */
import type { BaseLogger } from 'pino';
import { isUuid } from '../platform/ids.js';
import type { LegacyTemporaryFolders, Storage } from '../platform/storage/index.js';

/** The uploaded file is kept as `original.<extension>`, typed as its kind. */
export const ORIGINAL_EXTENSION = { jpeg: 'jpg', png: 'png', dicom: 'dcm' } as const;
export const ORIGINAL_MIME = { jpeg: 'image/jpeg', png: 'image/png', dicom: 'application/dicom' } as const;

/**
 * Whether a scan's original (by its key, `original.<extension>` in either layout) is a JPEG or
 * PNG: what libvips decodes directly, with nothing to window, so its analysis needs no render.
 */
export const isRasterOriginal = (originalKey: string): boolean =>
  originalKey.endsWith(`.${ORIGINAL_EXTENSION.jpeg}`) || originalKey.endsWith(`.${ORIGINAL_EXTENSION.png}`);

/** The key of one of a scan's files: `name` is e.g. `original.dcm`, `image.png`, `heatmap-<id>.png`. */
export const scanFileKey = (scanId: string, name: string): string => `scans/${scanId.slice(0, 2)}/${scanId}.${name}`;

export const heatmapKey = (scanId: string, analysisId: string): string => scanFileKey(scanId, `heatmap-${analysisId}.png`);
export const reportKey = (scanId: string, reportId: string): string => scanFileKey(scanId, `report-${reportId}.pdf`);

/** Every shard folder of scanFileKey: made when the server starts (runtime.ts), not by an upload. */
export const SCAN_FILE_FOLDERS: readonly string[] = Array.from({ length: 256 }, (_, i) => `scans/${i.toString(16).padStart(2, '0')}`);

/** The folder a scan's files had before the shard layout: rows made then still name keys under it. */
const legacyScanFolder = (scanId: string): string => `scans/${scanId}/`;

/**
 * The folders of the layout before the shard folders (`scans/<scan id>/`), where writes of that
 * time also left their temporary files when a crash cut them off: swept with the rest.
 */
export const LEGACY_SCAN_FOLDERS: LegacyTemporaryFolders = { under: 'scans', folder: isUuid };

/** A scan's stored files, as its rows name them (scan, analyses' heatmaps, reports). */
export interface ScanFiles {
  id: string;
  keys: readonly string[];
}

/**
 * Removes the files of one scan: each key its rows name, and a legacy scan's whole folder (which
 * also holds any file a row never recorded). Throws on the first storage failure.
 */
export async function removeStoredFiles(storage: Storage, scan: ScanFiles): Promise<void> {
  const legacy = legacyScanFolder(scan.id);
  const current = scan.keys.filter((key) => !key.startsWith(legacy));
  for (const key of current) await storage.delete(key);
  if (current.length < scan.keys.length) await storage.deletePrefix(legacy);
}

/** Removes every stored file of the given scans, after their rows were deleted. */
export async function removeScanFiles(storage: Storage, scans: readonly ScanFiles[], log: Pick<BaseLogger, 'error'>): Promise<void> {
  for (const scan of scans) {
    try {
      await removeStoredFiles(storage, scan);
    } catch (err) {
      // The rows are gone already; an orphaned file is logged for clean-up, not an error.
      log.error({ err, scanId: scan.id }, 'could not remove stored files of a deleted scan');
    }
  }
}
