/**
 * Results of reads kept while the database's write generation stays the same (see
 * write-generation.ts for PGlite, server-writes.ts for PostgreSQL): any change to data moves
 * the generation and empties the cache (on PostgreSQL a change by another process once its
 * NOTIFY arrives). Never inside a transaction, nor while the generation is not live (the
 * server's notifications are not arriving): then every call reads.
 *
 * Concurrent calls with the same key share one read. The key must name everything the result
 * depends on, the viewer whose access rules it applied included.
 */
import { writeGenerationOf, type DbOrTx } from './index.js';
import type { WriteGeneration } from './write-generation.js';

interface Kept<T> {
  generation: number;
  entries: Map<string, Promise<T>>;
}

export function createReadCache<T>(
  max = 1_000,
  generationOf: (db: DbOrTx) => WriteGeneration | undefined = writeGenerationOf,
): (db: DbOrTx, key: string, read: () => Promise<T>) => Promise<T> {
  const byDb = new WeakMap<object, Kept<T>>();
  return (db, key, read) => {
    const writes = generationOf(db);
    if (!writes || writes.live?.() === false) return read();
    const generation = writes.current();
    let kept = byDb.get(db);
    if (!kept || kept.generation !== generation) byDb.set(db, (kept = { generation, entries: new Map() }));
    const hit = kept.entries.get(key);
    if (hit) return hit;
    if (kept.entries.size >= max) kept.entries.clear();
    const entries = kept.entries;
    const result = read();
    entries.set(key, result);
    // A failed read is not kept; a read that outlived its generation is dropped with it.
    result.catch(() => entries.delete(key));
    return result;
  };
}
