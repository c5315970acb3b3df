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
   * The total for `key`: `bounded()` counts at most LARGE + 1 rows; only when it hits the bound
   * does `exact()` count them all (awaited the first time, in the background afterwards).
   */
  total(key: string, bounded: () => Promise<number>, exact: () => Promise<number>): Promise<number>;
}

export function createTotalsCache(now: () => number = Date.now): TotalsCache {
  const large = new Map<string, Entry>();
  return {
    async total(key, bounded, exact) {
      const cached = large.get(key);
      if (cached) {
        if (now() - cached.at > FRESH_MS && !cached.refreshing) {
          cached.refreshing = true;
          exact()
            .then((total) => large.set(key, { total, at: now(), refreshing: false }))
            .catch(() => {
              cached.refreshing = false;
            });
        }
        return cached.total;
      }
      const n = await bounded();
      if (n <= LARGE) return n;
      const total = await exact();
      if (large.size >= MAX_KEYS) large.clear();
      large.set(key, { total, at: now(), refreshing: false });
      return total;
    },
  };
}
