/**
 * The signed-in user of a request, cached for a few seconds per process so that a burst of
 * requests does not re-read one row each time, without ever serving a stale account: every
 * change to a user row (role, deactivation, a revoked token's version, deletion) fires a
 * PostgreSQL NOTIFY from a trigger in the same transaction, and every process evicts that user
 * when it commits. While the notification connection is down the cache is bypassed
 * (and emptied when it comes back), so a missed notification can never keep a revoked account
 * alive. The TTL is only a second line of defence.
 */
import type { Database } from '../platform/db/index.js';

/** Channel of the users_changed trigger (migration 0002); the payload is the user's id. */
const USERS_CHANNEL = 'imagemedix_users';

export interface UserCache<T> {
  /** The cached value, or `load()`'s, cached when notifications are flowing. */
  get(id: string, load: () => Promise<T | null>): Promise<T | null>;
  /** Forgets every user (this process changed users: its next requests must not wait for the NOTIFY). */
  clear(): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createUserCache<T>(database: Pick<Database, 'listen'>, { ttlMs = 10_000, max = 10_000 } = {}): UserCache<T> {
  const entries = new Map<string, { value: T; expires: number; generation: number }>();
  let live = false;
  // Bumped by every eviction: a load that started before an eviction must not be cached after it.
  let generation = 0;
  let unlisten: (() => Promise<void>) | null = null;

  const evict = (id: string | null) => {
    generation++;
    if (id) entries.delete(id);
    else entries.clear();
  };

  return {
    async get(id, load) {
      if (live) {
        const hit = entries.get(id);
        if (hit && hit.expires > Date.now()) return hit.value;
      }
      const startedAt = generation;
      const value = await load();
      if (live && value !== null && generation === startedAt) {
        if (entries.size >= max) entries.clear();
        entries.set(id, { value, expires: Date.now() + ttlMs, generation: startedAt });
      }
      return value;
    },
    clear: () => evict(null),
    async start() {
      try {
        unlisten = await database.listen(USERS_CHANNEL, {
          onNotify: (payload) => evict(payload || null),
          onReconnect: () => {
            evict(null);
            live = true;
          },
          onError: () => {
            live = false;
            evict(null);
          },
        });
        live = true;
      } catch {
        // No notifications, no cache: every request reads its user.
        live = false;
      }
    },
    async stop() {
      live = false;
      evict(null);
      await unlisten?.();
    },
  };
}
