/**
 * How many scans a list matches (`totalScans`, `totalPages`). Counting is the expensive part of
 * a page on a big table: the page itself reads 10 index entries, an exact count of an admin's
 * million scans reads a million. So a count stops at LARGE + 1 rows (exact, and cheap, for
 * any list a person pages through), and a larger total is kept per process for a little while
 * and refreshed in the background: a list of 1,000,000 scans may say 999,990 for a few seconds.
 */
export const LARGE = 10_000;
const FRESH_MS = 15_000;
const MAX_KEYS = 1_000;

interface Entry {
  total: number;
  at: number;
  refreshing: boolean;
}

export interface TotalsCache {
  /**
   * The remembered total of `key` when it is a list of more than LARGE scans (a stale one is
   * refreshed in the background by `exact()`); undefined otherwise, and the caller counts.
   */
  cached(key: string, exact: () => Promise<number>): number | undefined;
  /**
   * The total from a count that stopped at LARGE + 1 rows: that count itself up to LARGE, else
   * `exact()`, remembered for `cached`.
   */
  settle(key: string, bounded: number, exact: () => Promise<number>): Promise<number>;
}

export function createTotalsCache(now: () => number = Date.now): TotalsCache {
  const large = new Map<string, Entry>();
  return {
    cached(key, exact) {
      const cached = large.get(key);
      if (!cached) return undefined;
      if (now() - cached.at > FRESH_MS && !cached.refreshing) {
        cached.refreshing = true;
        exact()
          .then((total) => large.set(key, { total, at: now(), refreshing: false }))
          .catch(() => {
            cached.refreshing = false;
          });
      }
      return cached.total;
    },
    async settle(key, bounded, exact) {
      if (bounded <= LARGE) return bounded;
      const total = await exact();
      if (large.size >= MAX_KEYS) large.clear();
      large.set(key, { total, at: now(), refreshing: false });
      return total;
    },
  };
}
