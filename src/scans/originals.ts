/**
 * Small originals in the database: an upload up to ORIGINALS_IN_DATABASE_MAX_KB (default 1 MiB,
 * the size an upload is held in memory whole, src/scans/upload.ts) keeps its original file in
 * `scan_originals`, written by the upload's own statement, instead of a file of its own in the
 * file store. The row and its bytes then commit together with one durable write (the commit's
 * WAL flush) where a file costs its creation and an fdatasync in series with that commit
 * (docs/benchmarks/ingest.md). Orthanc can keep its attachments in PostgreSQL the same way.
 *
 * Such a scan's original_key is `database/<scan id>.original.<ext>`. Every reader goes through
 * Storage with the key from the row, so withDatabaseOriginals makes these keys read like any
 * file: the worker's rendering and analysis, the pixel window, heatmaps, deletion. Larger
 * uploads stream to the file store (local disk or S3) as before; a scan's bytes go with its row
 * (on delete cascade), so no sweep is needed for them.
 */
import { eq } from 'drizzle-orm';
import type { Db } from '../platform/db/index.js';
import { scanOriginals } from '../platform/db/schema.js';
import { StorageNotFoundError, type Storage } from '../platform/storage/index.js';
import { isUuid } from '../platform/ids.js';

const PREFIX = 'database/';

/** The key of an original kept in the database (`name` as `original.dcm`). */
export const databaseOriginalKey = (scanId: string, name: string): string => `${PREFIX}${scanId}.${name}`;

/** The scan whose database original `key` names; null when it is a file store's key. */
function scanOfKey(key: string): string | null {
  if (!key.startsWith(PREFIX)) return null;
  const scanId = key.slice(PREFIX.length, PREFIX.length + 36);
  return isUuid(scanId) && key[PREFIX.length + 36] === '.' ? scanId : null;
}

/** PGlite answers a bytea as a Uint8Array, pg as a Buffer. */
const asBuffer = (bytes: Uint8Array): Buffer => (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));

/**
 * `storage`, reading the originals kept in the database by their keys as files. They are only
 * written by an upload's statement (src/scans/repository.ts), never put here, and removed with
 * their scan's row: a delete of such a key has nothing left to do.
 */
export function withDatabaseOriginals(storage: Storage, db: Db): Storage {
  async function read(key: string, scanId: string): Promise<Buffer> {
    const [row] = await db.select({ bytes: scanOriginals.bytes }).from(scanOriginals).where(eq(scanOriginals.scanId, scanId));
    if (!row) throw new StorageNotFoundError(key);
    return asBuffer(row.bytes);
  }
  const refuseWrite = (key: string) => {
    if (scanOfKey(key)) throw new Error(`A database original is written with its scan's row, not through storage: ${key}`);
  };
  return {
    ...storage,
    put(key, body, contentType, opts) {
      refuseWrite(key);
      return storage.put(key, body, contentType, opts);
    },
    putStream(key, body, contentType) {
      refuseWrite(key);
      return storage.putStream(key, body, contentType);
    },
    get(key) {
      const scanId = scanOfKey(key);
      return scanId ? read(key, scanId) : storage.get(key);
    },
    async readRange(key, start, end) {
      const scanId = scanOfKey(key);
      if (!scanId) return storage.readRange(key, start, end);
      return (await read(key, scanId)).subarray(start, Math.max(start, end));
    },
    async exists(key) {
      const scanId = scanOfKey(key);
      if (!scanId) return storage.exists(key);
      const [row] = await db.select({ scanId: scanOriginals.scanId }).from(scanOriginals).where(eq(scanOriginals.scanId, scanId));
      return row !== undefined;
    },
    async delete(key) {
      const scanId = scanOfKey(key);
      // Removed with the scan's row (on delete cascade); an upload that failed never committed it.
      if (scanId) return;
      return storage.delete(key);
    },
  };
}
