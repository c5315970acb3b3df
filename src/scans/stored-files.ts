/** Where a scan's files live in storage, and their removal once the scan's rows are gone. */
import type { BaseLogger } from 'pino';
import type { Storage } from '../platform/storage/index.js';

/** The uploaded file is kept as `original.<extension>`, typed as its kind. */
export const ORIGINAL_EXTENSION = { jpeg: 'jpg', png: 'png', dicom: 'dcm' } as const;
export const ORIGINAL_MIME = { jpeg: 'image/jpeg', png: 'image/png', dicom: 'application/dicom' } as const;

/** Every stored file of a scan (image, thumbnail, heatmaps, reports) sits under this prefix. */
export const scanFilesPrefix = (scanId: string): string => `scans/${scanId}/`;

/** Removes every stored file of the given scans, after their rows were deleted. */
export async function removeScanFiles(storage: Storage, scanIds: readonly string[], log: Pick<BaseLogger, 'error'>): Promise<void> {
  for (const id of scanIds) {
    try {
      await storage.deletePrefix(scanFilesPrefix(id));
    } catch (err) {
      // The rows are gone already; an orphaned file is logged for clean-up, not an error.
      log.error({ err, scanId: id }, 'could not remove stored files of a deleted scan');
    }
  }
}
