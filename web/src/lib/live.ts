/**
 * Live scan status from GET /api/scans/events (server-sent events), read with fetch so the
 * bearer token travels in a header (EventSource cannot send one, and a token in a URL ends up
 * in logs). Reconnects while scans are still running; stops when the server says `end`.
 */
import { useEffect, useRef } from 'react';
import { session, type ScanStatus } from '../api/client';

export type StatusEvent = Omit<ScanStatus, 'status'> & { _id: string; status: ScanStatus['status'] | 'gone' };

async function follow(ids: string[], onEvent: (e: StatusEvent) => void, signal: AbortSignal): Promise<'end' | 'closed'> {
  const res = await fetch(`/api/scans/events?ids=${ids.map(encodeURIComponent).join(',')}`, {
    headers: { authorization: `Bearer ${session.token ?? ''}`, accept: 'text/event-stream' },
    signal,
  });
  if (!res.ok || !res.body) throw new Error(`status stream: ${res.status}`);
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
      if (event === 'status' && data) onEvent(JSON.parse(data) as StatusEvent);
    }
  }
}

/** Follows the given scans while the component is shown; `ids` empty means nothing to follow. */
export function useScanStatus(ids: string[], onEvent: (e: StatusEvent) => void): void {
  const handler = useRef(onEvent);
  handler.current = onEvent;
  const key = [...ids].sort().join(',');
  useEffect(() => {
    if (!key) return;
    const controller = new AbortController();
    void (async () => {
      let failures = 0;
      while (!controller.signal.aborted && failures < 5) {
        try {
          const outcome = await follow(key.split(','), (e) => handler.current(e), controller.signal);
          if (outcome === 'end') return;
          failures = 0;
        } catch {
          if (controller.signal.aborted) return;
          failures++;
          await new Promise((r) => setTimeout(r, 2000 * failures));
        }
      }
    })();
    return () => controller.abort();
  }, [key]);
}
