/**
 * The sweep of stored scan files whose scan was never committed. An upload whose write failed
 * and whose outcome the database could not confirm (answered 503, service.ts committedUpload)
 * keeps its files, because its rows may be committed; when they were not, those files belong to
 * no scan and nothing else would ever remove them. So do files left by a process killed between
 * storing an upload and its commit, and files a scan's deletion could not remove.
 *
 * Only keys of the layout (stored-files.ts scanFileKey: `scans/<2 hex>/<scan id>.<name>`, the id
 * lower-case as the server makes it) whose file nothing wrote to for ORPHAN_FILE_AGE_HOURS are
 * candidates, and one goes only when the database answered that its scan id has no row: a query
 * that fails fails the job (retried), removing nothing. The age is far beyond any upload's time
 * between storing its file and its commit. Scheduled by scheduleSweeps (sweeps.ts), like the
 * partial-upload sweep: one job per interval; two sweeps at once remove each file once.
 */
import type { Db } from '../platform/db/index.js';
import { isUuid } from '../platform/ids.js';
import type { JobDefinition } from '../platform/queue/index.js';
import type { Storage } from '../platform/storage/index.js';
import { existingScanIds } from './repository.js';
import { SCAN_FILE_FOLDERS, scanFileKey } from './stored-files.js';
import { sweepJob, type SweepPayloadSchema } from './sweeps.js';

export const SWEEP_ORPHAN_FILES_JOB = 'storage.sweep-orphan-files';

/** Scan ids per database query. */
const IDS_PER_QUERY = 500;

/** The scan id of a key of the layout under `folder`, or null for any other name. */
export function scanIdOfFileKey(folder: string, key: string): string | null {
  const name = key.slice(folder.length + 1);
  const scanId = name.slice(0, 36);
  if (!key.startsWith(`${folder}/`) || name[36] !== '.' || !isUuid(scanId) || scanId !== scanId.toLowerCase()) return null;
  // The key the layout gives this id and file name: anything else (another shard) is not ours.
  return scanFileKey(scanId, name.slice(37)) === key ? scanId : null;
}

export function sweepOrphanFilesJob(deps: {
  db: Db;
  storage: Storage;
  /** Files written to less than this long ago may belong to an upload whose commit is coming: kept. */
  ageHours: number;
  now?: () => number;
}): JobDefinition<typeof SweepPayloadSchema> {
  return sweepJob({
    name: SWEEP_ORPHAN_FILES_JOB,
    ageMs: deps.ageHours * 3_600_000,
    now: deps.now,
    swept: 'files without a scan swept',
    async sweep(olderThan, log) {
      let removed = 0;
      for (const folder of SCAN_FILE_FOLDERS) {
        const keysByScan = new Map<string, string[]>();
        for (const file of await deps.storage.listFolder(folder)) {
          const scanId = file.modifiedAt < olderThan ? scanIdOfFileKey(folder, file.key) : null;
          if (scanId) keysByScan.set(scanId, [...(keysByScan.get(scanId) ?? []), file.key]);
        }
        const ids = [...keysByScan.keys()];
        for (let i = 0; i < ids.length; i += IDS_PER_QUERY) {
          const batch = ids.slice(i, i + IDS_PER_QUERY);
          // Throws when the database does not answer: then nothing of this batch is removed.
          const committed = await existingScanIds(deps.db, batch);
          for (const scanId of batch) {
            if (committed.has(scanId)) continue;
            for (const key of keysByScan.get(scanId)!) {
              await deps.storage.delete(key);
              removed++;
            }
            log.warn({ scanId }, 'removed the stored files of a scan that has no row');
          }
        }
      }
      return removed;
    },
  });
}
