import type { Readable } from 'node:stream';

/**
 * Where scan files live: DATA_DIR on local disk by default, an S3-compatible bucket when
 * S3_BUCKET is set. Keys look like `scans/<2 hex>/<scanId>.original.dcm` (src/scans/stored-files.ts:
 * a few shard folders, not one per scan); scans stored before that have `scans/<scanId>/...`,
 * removed with their prefix. A small upload's original is kept in the database instead, under a
 * key `database/<scanId>.original.<ext>` that src/scans/originals.ts reads as a file.
 */
export interface Storage {
  kind: 'local' | 's3';
  /**
   * Stores `body` under `key`. `fresh`: the key is new (it names a scan made by this request),
   * so nothing reads it before the row naming it commits: local storage then writes the file in
   * place, refusing (EEXIST) to replace one, instead of a temporary file and a rename. A put
   * that fails leaves nothing under the key but what was there before. A fresh put resolves
   * once the file is on disk (local: fdatasync), as an upload's original must be before its
   * row commits; other puts (renditions, heatmaps: made again from the original) do not wait.
   */
  put(key: string, body: Buffer, contentType: string, opts?: { fresh?: boolean }): Promise<void>;
  /**
   * Writes `body` under `key` as it arrives, never holding it whole (a large upload). The key
   * appears only once the stream has ended; if the stream or the write fails, nothing is left
   * under it and the promise rejects. It resolves once the file is on disk, as a fresh put.
   */
  putStream(key: string, body: Readable, contentType: string): Promise<void>;
  get(key: string): Promise<Buffer>;
  /**
   * Bytes `start` to `end` (exclusive) of a stored file, fewer when it ends sooner: a large
   * upload's header is read this way instead of the whole file. StorageNotFoundError when absent.
   */
  readRange(key: string, start: number, end: number): Promise<Buffer>;
  /**
   * Removes what writes cut off by a crash left behind (local: temporary files; S3: unfinished
   * multipart uploads under the prefix) that nothing wrote to since `olderThan`, which must lie
   * further back than any upload in progress can have been idle. Safe to run in several
   * processes at once. Answers how many it removed. `legacy` names the folders where an
   * earlier layout wrote temporary files beside their file (local storage only: S3 puts leave
   * nothing outside multipart uploads).
   */
  sweepPartialUploads(olderThan: Date, legacy?: LegacyTemporaryFolders): Promise<number>;
  /**
   * The files directly in `folder` (`scans/3f`: no deeper), with when each was last written:
   * for the sweep of files whose scan was never committed. An absent folder is empty.
   */
  listFolder(folder: string): Promise<{ key: string; modifiedAt: Date }[]>;
  exists(key: string): Promise<boolean>;
  delete(key: string): Promise<void>;
  deletePrefix(prefix: string): Promise<void>;
  /**
   * Makes the folders of these prefixes (`scans/3f`) ahead of their first write, and remembers
   * them, so no write waits for one (local storage; S3 has no folders and does nothing).
   */
  prepareFolders(prefixes: readonly string[]): Promise<void>;
}

/**
 * Folders where local storage wrote its temporary files (`<file>.<uuid>.tmp`) beside the file
 * before they moved to one folder: each sub-folder of `under` whose name `folder` accepts.
 */
export interface LegacyTemporaryFolders {
  under: string;
  folder: (name: string) => boolean;
}

export class StorageNotFoundError extends Error {
  override name = 'StorageNotFoundError';
}

/**
 * The store cannot list what crashed uploads left (some S3-compatible servers do not implement
 * ListMultipartUploads): the sweep cannot run there, and a bucket lifecycle rule has to do it.
 */
export class SweepUnsupportedError extends Error {
  override name = 'SweepUnsupportedError';
}

const SAFE_KEY = /^[A-Za-z0-9][A-Za-z0-9._\-/]*$/;

/** Keys are built by the server, never from user input; this guards against a bug doing so. */
export function assertSafeKey(key: string): void {
  if (!SAFE_KEY.test(key) || key.split('/').some((part) => part === '..' || part === '')) {
    throw new Error(`Unsafe storage key: ${key}`);
  }
}

export { createLocalStorage } from './local.js';
export { createS3Storage } from './s3.js';
