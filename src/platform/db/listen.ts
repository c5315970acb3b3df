/**
 * LISTEN on a PostgreSQL server through a dedicated connection that comes back by itself: a
 * server restart or a dropped socket reconnects with backoff, and `onReconnect` tells the
 * caller that notifications may have been missed meanwhile (the queue then fetches at once).
 */
import pg from 'pg';

export interface ListenOptions {
  connectionString: string;
  channel: string;
  onNotify(payload: string): void;
  onReconnect?(): void;
  onError?(err: Error): void;
}

const MAX_BACKOFF_MS = 5_000;

export async function listenOnServer(opts: ListenOptions): Promise<() => Promise<void>> {
  let client: pg.Client | null = null;
  let closed = false;
  let backoff = 100;
  let timer: NodeJS.Timeout | null = null;

  const connect = async (first: boolean): Promise<void> => {
    const c = new pg.Client({ connectionString: opts.connectionString, connectionTimeoutMillis: 5_000 });
    c.on('notification', (msg) => {
      if (msg.channel === opts.channel) opts.onNotify(msg.payload ?? '');
    });
    const retry = (err: Error) => {
      if (client !== c) return;
      client = null;
      c.removeAllListeners('error');
      c.on('error', () => undefined);
      void c.end().catch(() => undefined);
      if (closed) return;
      opts.onError?.(err);
      timer = setTimeout(() => void connect(false).catch(() => undefined), backoff);
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    };
    c.on('error', retry);
    c.on('end', () => retry(new Error('listen connection ended')));
    client = c;
    try {
      await c.connect();
      // Identifiers cannot be parameters; the channel is a constant of ours, quoted anyway.
      await c.query(`LISTEN "${opts.channel.replace(/"/g, '""')}"`);
      backoff = 100;
      if (!first) opts.onReconnect?.();
    } catch (err) {
      if (first) {
        client = null;
        c.removeAllListeners('end');
        c.removeAllListeners('error');
        c.on('error', () => undefined);
        await c.end().catch(() => undefined);
        throw err;
      }
      retry(err as Error);
    }
  };

  await connect(true);
  return async () => {
    closed = true;
    if (timer) clearTimeout(timer);
    const c = client;
    client = null;
    if (c) {
      c.removeAllListeners('end');
      c.removeAllListeners('error');
      c.on('error', () => undefined);
      await c.end().catch(() => undefined);
    }
  };
}
