/**
 * Live scan status from GET /api/scans/events (server-sent events) for a page: follows the
 * scans while the page is shown (see status-stream.ts). A refused token ends the session the
 * way an API call's 401 does: back to sign-in, keeping the page that was open.
 */
import { useEffect, useRef } from 'react';
import { session, sessionEnded, type ScanStatus } from '../api/client';
import { followScanStatus } from './status-stream';

export type StatusEvent = Omit<ScanStatus, 'status'> & { _id: string; status: ScanStatus['status'] | 'gone' };

/** Follows the given scans while the component is shown; `ids` empty means nothing to follow. */
export function useScanStatus(ids: string[], onEvent: (e: StatusEvent) => void): void {
  const handler = useRef(onEvent);
  handler.current = onEvent;
  const key = [...ids].sort().join(',');
  useEffect(() => {
    if (!key) return;
    const controller = new AbortController();
    void followScanStatus<StatusEvent>({
      ids: key.split(','),
      token: () => session.token,
      onEvent: (e) => handler.current(e),
      onSessionEnd: sessionEnded,
      signal: controller.signal,
    });
    return () => controller.abort();
  }, [key]);
}
