/**
 * The write generation of a PostgreSQL server database (see write-generation.ts for PGlite's):
 * a number that moves whenever data a kept read depends on may have changed, so that list
 * pages can be kept across requests (read-cache.ts) although other processes write too.
 *
 * - Another process's write: every statement on a table a list page reads fires a NOTIFY
 *   (migration 0010), delivered when its transaction commits; each one moves the generation.
 *   A page read before the NOTIFY arrived is dropped with its generation, so once a write's
 *   NOTIFY is delivered no page older than it is served.
 * - This process's own write: the pool's statements that may write (write-generation.ts's
 *   rule) and every checked-out connection (a transaction) move it before and after, so a
 *   request of this process sees its own writes at once, without waiting for the NOTIFY.
 * - While the LISTEN connection is down (or never came up) notifications may be missed, so the
 *   generation is not live: read caches read every time. It moves when the connection is back.
 */
import type pg from 'pg';
import type { WriteGeneration } from './write-generation.js';
import { wrapMethods, writesMayChange } from './write-generation.js';

/** Channel of the imagemedix_reads_changed triggers (migration 0010). */
export const READS_CHANNEL = 'imagemedix_reads';

type Listen = (channel: string, handlers: { onNotify: () => void; onReconnect: () => void; onError: () => void }) => Promise<() => Promise<void>>;

export interface ServerWrites {
  /** The pool to run every statement through (Drizzle's): its writes move the generation. */
  pool: pg.Pool;
  generation: WriteGeneration;
  /** Starts listening; the generation is live once the LISTEN connection is up. */
  start(listen: Listen): Promise<void>;
  stop(): Promise<void>;
}

function statementText(query: unknown): string {
  if (typeof query === 'string') return query;
  const text = (query as { text?: unknown } | null)?.text;
  return typeof text === 'string' ? text : '';
}

export function trackServerWrites(pool: pg.Pool): ServerWrites {
  let generation = 0;
  let live = false;
  let unlisten: (() => Promise<void>) | null = null;
  const moved = () => {
    generation++;
  };

  const tracked = wrapMethods(pool, {
    query: (method) => (query, ...rest) => {
      if (!writesMayChange(statementText(query))) return method(query, ...rest);
      moved();
      const result = method(query, ...rest) as Promise<unknown>;
      // (Drizzle always passes no callback: the result is the statement's promise.)
      void result.then(moved, moved);
      return result;
    },
    // A checked-out connection runs a transaction (Drizzle's only use of it): anything it may
    // write counts as written when it goes back to the pool.
    connect: (method) => async (...args) => {
      if (args.length > 0) return method(...args);
      moved();
      const client = (await method()) as pg.PoolClient;
      const release = client.release.bind(client);
      client.release = (err?: Error | boolean) => {
        moved();
        release(err);
      };
      return client;
    },
  });

  return {
    pool: tracked,
    generation: { current: () => generation, live: () => live },
    async start(listen) {
      try {
        unlisten = await listen(READS_CHANNEL, {
          onNotify: moved,
          onReconnect: () => {
            moved();
            live = true;
          },
          onError: () => {
            live = false;
            moved();
          },
        });
        live = true;
      } catch {
        // No notifications, no kept reads: every list reads.
        live = false;
      }
    },
    async stop() {
      live = false;
      moved();
      await unlisten?.();
      unlisten = null;
    },
  };
}
