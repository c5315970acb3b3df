/**
 * Following GET /api/scans/events (server-sent events): reading the stream, reconnecting while
 * scans are still running, and stopping when the server says `end` or the session is over.
 * Read with fetch so the bearer token travels in a header (EventSource cannot send one, and a
 * token in a URL ends up in logs). Pure (fetch, the token and the wait are passed in), so it is
 * tested under node; web/src/lib/live.ts wires it to the app.
 */
// `.js`: the server's type-check (NodeNext resolution) reads this file too, through its test.
import { endsSession } from './api-errors.js';

/** Why following stopped. */
export type StreamOutcome = 'end' | 'session-ended' | 'gave-up' | 'aborted';

/** `E`: the shape of a `status` event's data (StatusEvent in live.ts). */
export interface FollowOptions<E> {
  ids: string[];
  /** The session token at the time of each (re)connection. */
  token: () => string | null;
  onEvent: (event: E) => void;
  /** The server refused the token (401): the session is over, as for any API call. */
  onSessionEnd: () => void;
  signal: AbortSignal;
  fetch?: typeof fetch;
  /** Waits before a retry; a timer in the app, instant in tests. */
  wait?: (ms: number) => Promise<void>;
  /** Failed connections in a row before giving up. */
  maxFailures?: number;
}

/** A connection refused with an HTTP status (a dropped or unreachable one has none). */
class StreamRefused extends Error {
  constructor(readonly status: number) {
    super(`status stream: ${status}`);
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Follows the scans' status until the server says `end`, the session ends, retries run out or `signal` aborts. */
export async function followScanStatus<E>(options: FollowOptions<E>): Promise<StreamOutcome> {
  const { signal, wait = sleep, maxFailures = 5 } = options;
  let failures = 0;
  while (!signal.aborted && failures < maxFailures) {
    try {
      if ((await connectOnce(options)) === 'end') return 'end';
      // The server closed a healthy stream (a restart, a proxy's timeout): reconnect at once.
      failures = 0;
    } catch (err) {
      if (signal.aborted) return 'aborted';
      // A refused token will not work on a retry either: back to sign-in instead.
      if (err instanceof StreamRefused && endsSession(err.status, '/api/scans/events')) {
        options.onSessionEnd();
        return 'session-ended';
      }
      failures++;
      await wait(2000 * failures);
    }
  }
  return signal.aborted ? 'aborted' : 'gave-up';
}

async function connectOnce<E>({ ids, token, onEvent, signal, fetch: fetchFn = fetch }: FollowOptions<E>): Promise<'end' | 'closed'> {
  const res = await fetchFn(`/api/scans/events?ids=${ids.map(encodeURIComponent).join(',')}`, {
    headers: { authorization: `Bearer ${token() ?? ''}`, accept: 'text/event-stream' },
    signal,
  });
  if (!res.ok || !res.body) throw new StreamRefused(res.status);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return 'closed';
    buffer += value;
    let cut: number;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = 'message';
      let data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (event === 'end') return 'end';
      if (event === 'status' && data) onEvent(JSON.parse(data) as E);
    }
  }
}
