import { lstat, mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import type { Dirent } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { UUID_PATTERN } from '../ids.js';
import { assertSafeKey, StorageNotFoundError, type Storage } from './index.js';

/** Enough for every scan being uploaded at once; beyond it the list starts again. */
const MAX_KNOWN_FOLDERS = 4096;

const errno = (err: unknown) => (err as NodeJS.ErrnoException).code;

/**
 * Where files being written live until their rename into place: one folder, so that what a
 * crash left behind is found without walking every scan's folder (sweepPartialUploads). Never
 * a key: keys start with a letter or digit. It must be on the same file system as the scans.
 */
export const PARTIAL_FOLDER = '.partial';

/**
 * A temporary file as writes made them beside their file before PARTIAL_FOLDER (`original.dcm.<uuid>.tmp`).
 * No stored file is named so: keys end in their file's own extension.
 */
const LEGACY_TEMPORARY = new RegExp(`\\.${UUID_PATTERN}\\.tmp$`);

/**
 * Removes the files of `dir` whose name `isTemporary` accepts and that nobody wrote to since
 * `olderThan`. A file still being written has a recent modification time (every write sets it).
 * Another process sweeping at the same time removes the same files: one of the two finds each
 * gone, which is fine; so is a folder removed meanwhile (a deleted scan's).
 */
async function sweepFolder(dir: string, olderThan: Date, isTemporary: (name: string) => boolean): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if (errno(err) === 'ENOENT') return 0;
    throw err;
  }
  let removed = 0;
  for (const name of names) {
    if (!isTemporary(name)) continue;
    const tmp = path.join(dir, name);
    try {
      const info = await lstat(tmp);
      if (!info.isFile() || info.mtime >= olderThan) continue;
      await unlink(tmp);
      removed++;
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw err;
    }
  }
  return removed;
}

/** Makes a folder's entries durable (a file renamed into it). */
async function syncFolder(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export function createLocalStorage(root: string): Storage {
  const resolve = (key: string) => {
    assertSafeKey(key);
    return path.join(root, key);
  };
  const partialDir = path.join(root, PARTIAL_FOLDER);
  /** A new temporary file's path, named after the key's file so a leftover says what it was. */
  const partialFile = (file: string) => path.join(partialDir, `${path.basename(file)}.${randomUUID()}.tmp`);
  let partialDirMade: Promise<unknown> | null = null;
  const makePartialDir = (again = false) => {
    if (!partialDirMade || again) {
      partialDirMade = mkdir(partialDir, { recursive: true, mode: 0o700 });
      partialDirMade.catch(() => (partialDirMade = null));
    }
    return partialDirMade;
  };
  /** Moves a finished temporary file into place, making the key's folder again if another process removed it. */
  async function moveIntoPlace(tmp: string, file: string, dir: string): Promise<void> {
    try {
      await rename(tmp, file);
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw err;
      await makeFolder(dir, true);
      await rename(tmp, file);
    }
  }
  /** Creates a temporary file for writing ('wx'), making its folder again if it was removed. */
  async function openPartial(tmp: string) {
    await makePartialDir();
    try {
      return await open(tmp, 'wx', 0o600);
    } catch (err) {
      if (errno(err) !== 'ENOENT') throw err;
      await makePartialDir(true);
      return open(tmp, 'wx', 0o600);
    }
  }
  // Folders this process made (or is making): a scan's files share one, so an upload's three
  // puts make it once instead of three times. Another process may remove a folder (a deleted
  // scan): a write that finds it gone makes it again.
  const folders = new Map<string, Promise<unknown>>();
  const makeFolder = (dir: string, again = false) => {
    let made = again ? undefined : folders.get(dir);
    if (!made) {
      if (folders.size >= MAX_KNOWN_FOLDERS) folders.clear();
      made = mkdir(dir, { recursive: true });
      folders.set(dir, made);
      made.catch(() => folders.delete(dir));
    }
    return made;
  };
  /** Writes a new file in place ('wx': never over an existing one); what a failed write made is removed. */
  async function putFresh(file: string, dir: string, body: Buffer): Promise<void> {
    // (Written synchronously on the event loop instead, small files made uploads slower on a
    // loaded machine, not faster: an ext4 mkdir or create then stalls the loop.)
    const write = async (again: boolean) => {
      await makeFolder(dir, again);
      const handle = await open(file, 'wx', 0o600);
      try {
        await handle.writeFile(body);
        // On disk before the row naming it commits, as the row is (PostgreSQL's commit): an
        // accepted upload survives a crash of the machine, not only of the process. The new
        // directory entry goes with it: in the journal's commit (ext4, XFS) and, on ext4 without
        // a journal, written by this sync itself (ext4_sync_parent, Linux 2.6.35+). A sync of the
        // folder as well only added a device flush, and 15-29% fewer small uploads a second
        // (docs/benchmarks/ingest.md, 2026-12-07 03:22).
        await handle.datasync();
      } finally {
        await handle.close();
      }
    };
    try {
      try {
        await write(false);
      } catch (err) {
        // The folder was removed by another process (a deleted scan): made again.
        if (errno(err) !== 'ENOENT') throw err;
        await write(true);
      }
    } catch (err) {
      // EEXIST: the file is someone else's, and stays. Otherwise a half-written one goes.
      if (errno(err) !== 'EEXIST') await rm(file, { force: true }).catch(() => undefined);
      throw err;
    }
  }
  return {
    kind: 'local',
    async put(key, body, _contentType, opts) {
      const file = resolve(key);
      const dir = path.dirname(file);
      if (opts?.fresh) return putFresh(file, dir, body);
      await makeFolder(dir);
      // Write then rename, so a reader never sees half a file.
      const tmp = partialFile(file);
      const handle = await openPartial(tmp);
      try {
        try {
          await handle.writeFile(body);
        } finally {
          await handle.close();
        }
        await moveIntoPlace(tmp, file, dir);
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
    },
    async putStream(key, body) {
      const file = resolve(key);
      const dir = path.dirname(file);
      await makeFolder(dir);
      const tmp = partialFile(file);
      // Opened before the stream is read, so a folder removed meanwhile is made again without
      // losing any of it.
      const handle = await openPartial(tmp);
      try {
        // Larger writes than the default 16 kB: a few hundred kB per trip through the thread pool.
        // `flush`: on disk before it is closed, and its folder's new entry after the rename, so
        // the upload's original is durable before its row commits (as putFresh's).
        await pipeline(body, handle.createWriteStream({ highWaterMark: 1024 * 1024, flush: true }));
        await moveIntoPlace(tmp, file, dir);
        await syncFolder(dir).catch(async (err: unknown) => {
          await rm(file, { force: true });
          throw err;
        });
      } catch (err) {
        await handle.close().catch(() => undefined);
        await rm(tmp, { force: true });
        throw err;
      }
    },
    async readRange(key, start, end) {
      let handle;
      try {
        handle = await open(resolve(key), 'r');
      } catch (err) {
        if (errno(err) === 'ENOENT') throw new StorageNotFoundError(key);
        throw err;
      }
      try {
        const wanted = Math.max(0, end - start);
        const out = Buffer.allocUnsafe(wanted);
        let got = 0;
        while (got < wanted) {
          const { bytesRead } = await handle.read(out, got, wanted - got, start + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        return got === wanted ? out : out.subarray(0, got);
      } finally {
        await handle.close();
      }
    },
    async sweepPartialUploads(olderThan, legacy) {
      let removed = await sweepFolder(partialDir, olderThan, (name) => name.endsWith('.tmp'));
      if (legacy) {
        // What crashes left inside the folders of the earlier layout (scans/<id>/), where nothing
        // writes any more.
        const under = resolve(legacy.under);
        let folders: Dirent[];
        try {
          folders = await readdir(under, { withFileTypes: true });
        } catch (err) {
          if (errno(err) !== 'ENOENT') throw err;
          folders = [];
        }
        for (const folder of folders) {
          if (!folder.isDirectory() || !legacy.folder(folder.name)) continue;
          removed += await sweepFolder(path.join(under, folder.name), olderThan, (name) => LEGACY_TEMPORARY.test(name));
        }
      }
      return removed;
    },
    async listFolder(folder) {
      const dir = resolve(folder);
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (errno(err) === 'ENOENT') return [];
        throw err;
      }
      const files = [];
      for (const entry of entries) {
        if (!entry.isFile()) continue;
        try {
          const info = await lstat(path.join(dir, entry.name));
          files.push({ key: `${folder}/${entry.name}`, modifiedAt: info.mtime });
        } catch (err) {
          // Removed meanwhile (a scan deleted): not there to list.
          if (errno(err) !== 'ENOENT') throw err;
        }
      }
      return files;
    },
    async get(key) {
      try {
        return await readFile(resolve(key));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new StorageNotFoundError(key);
        throw err;
      }
    },
    async exists(key) {
      try {
        await stat(resolve(key));
        return true;
      } catch {
        return false;
      }
    },
    async delete(key) {
      await rm(resolve(key), { force: true });
    },
    async prepareFolders(prefixes) {
      await Promise.all(prefixes.map((prefix) => makeFolder(resolve(prefix))));
    },
    async deletePrefix(prefix) {
      const dir = resolve(prefix.replace(/\/$/, ''));
      for (const known of folders.keys()) if (known === dir || known.startsWith(`${dir}${path.sep}`)) folders.delete(known);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
