import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { assertSafeKey, StorageNotFoundError, type Storage } from './index.js';

/** Enough for every scan being uploaded at once; beyond it the list starts again. */
const MAX_KNOWN_FOLDERS = 4096;

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
  return {
    kind: 'local',
    async put(key, body) {
      const file = resolve(key);
      const dir = path.dirname(file);
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
        await pipeline(body, handle.createWriteStream());
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
