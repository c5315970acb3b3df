import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { assertSafeKey, StorageNotFoundError, type Storage } from './index.js';

/** Enough for every scan being uploaded at once; beyond it the list starts again. */
const MAX_KNOWN_FOLDERS = 4096;

const errno = (err: unknown) => (err as NodeJS.ErrnoException).code;

export function createLocalStorage(root: string): Storage {
  const resolve = (key: string) => {
    assertSafeKey(key);
    return path.join(root, key);
  };
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
      await writeFile(file, body, { flag: 'wx', mode: 0o600 });
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
      const tmp = `${file}.${randomUUID()}.tmp`;
      try {
        await writeFile(tmp, body, { mode: 0o600 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        await makeFolder(dir, true);
        await writeFile(tmp, body, { mode: 0o600 });
      }
      await rename(tmp, file);
    },
    async putStream(key, body) {
      const file = resolve(key);
      const dir = path.dirname(file);
      await makeFolder(dir);
      const tmp = `${file}.${randomUUID()}.tmp`;
      // Opened before the stream is read, so a folder removed meanwhile is made again without
      // losing any of it.
      let handle;
      try {
        handle = await open(tmp, 'wx', 0o600);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        await makeFolder(dir, true);
        handle = await open(tmp, 'wx', 0o600);
      }
      try {
        // Larger writes than the default 16 kB: a few hundred kB per trip through the thread pool.
        await pipeline(body, handle.createWriteStream({ highWaterMark: 1024 * 1024 }));
        await rename(tmp, file);
      } catch (err) {
        await handle.close().catch(() => undefined);
        await rm(tmp, { force: true });
        throw err;
      }
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
    async deletePrefix(prefix) {
      const dir = resolve(prefix.replace(/\/$/, ''));
      for (const known of folders.keys()) if (known === dir || known.startsWith(`${dir}${path.sep}`)) folders.delete(known);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
