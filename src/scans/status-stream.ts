/**
 * Live status of a few scans as server-sent events, for the worklist and the viewer while an
 * analysis runs. One long request instead of a poll every second: the client's request budget
 * (100 per 15 minutes by default) is spent once, and the browser is told the moment a scan
 * moves. The database is the source of truth, so it works whichever process ran the analysis.
 *
 * Events: `status` with a ScanStatusEvent, sent for every scan at once and then on each change;
 * `end` when every followed scan is finished (completed, failed or gone), after which the
 * stream closes. A comment line every 15 s keeps proxies from closing an idle stream, and the
 * stream closes after `maxMs` anyway (the client reconnects if it still waits). The viewer's
 * sign-in is checked again before each poll (`reauthorize`): a stream whose token expired, or
 * whose user signed out, changed password or was deactivated, closes without `end`, so the
 * client reconnects and hears the 401 as any request would, instead of following patients'
 * scans for up to `maxMs` after the session ended.
 */
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { AppError, badRequest } from '../platform/errors.js';
import { isUuid } from '../platform/ids.js';
import type { ScanStatusEvent } from './schemas.js';
import type { Viewer } from '../access/index.js';
import { scanStatus, type ScanDeps } from './service.js';

const MAX_FOLLOWED_SCANS = 50;

export function parseScanIds(ids: string): string[] {
  const list = [...new Set(ids.split(',').map((s) => s.trim()).filter(Boolean))];
  if (list.length === 0) throw badRequest('ids must list at least one scan _id');
  if (list.length > MAX_FOLLOWED_SCANS) throw badRequest(`ids may list at most ${MAX_FOLLOWED_SCANS} scans; got ${list.length}`);
  const bad = list.find((id) => !isUuid(id));
  if (bad) throw badRequest(`ids must be scan _ids (UUIDs); got "${bad.slice(0, 40)}"`);
  return list;
}

async function statusEvent(deps: ScanDeps, viewer: Viewer, id: string): Promise<ScanStatusEvent> {
  try {
    return { _id: id, ...(await scanStatus(deps, { viewer, id })) };
  } catch (err) {
    // Deleted, or the patient was unassigned from this doctor, while the stream was open.
    if (err instanceof AppError && err.code === 'not_found') return { _id: id, status: 'gone', failureReason: null, jobStatus: null };
    throw err;
  }
}

const finished = (e: ScanStatusEvent) => e.status === 'completed' || e.status === 'failed' || e.status === 'gone' || e.status === 'pending';

export interface StatusStreamOptions {
  viewer: Viewer;
  /** The viewer as the request's token gives it now; rejects when the session is over. */
  reauthorize(): Promise<Viewer>;
  ids: string[];
  intervalMs?: number;
  heartbeatMs?: number;
  maxMs?: number;
  onError(err: unknown): void;
}

/**
 * Checks access to every scan first (404 for any that is not the viewer's, like GET /:id),
 * then returns the event stream.
 */
export async function openStatusStream(deps: ScanDeps, opts: StatusStreamOptions): Promise<{ stream: PassThrough; close: () => void }> {
  const { ids, intervalMs = 1000, heartbeatMs = 15_000, maxMs = 5 * 60_000 } = opts;
  let viewer = opts.viewer;
  const first = new Map<string, ScanStatusEvent>();
  for (const id of ids) first.set(id, await scanStatus(deps, { viewer, id }).then((s) => ({ _id: id, ...s })));

  const stream = new PassThrough();
  let open = true;
  const close = () => {
    if (!open) return;
    open = false;
    stream.end();
  };
  const send = (event: string, data: unknown) => {
    if (open) stream.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };

  const run = async () => {
    const last = new Map<string, string>();
    const started = Date.now();
    let lastWrite = started;
    let current = first;
    for (;;) {
      for (const event of current.values()) {
        const key = JSON.stringify(event);
        if (last.get(event._id) !== key) {
          last.set(event._id, key);
          send('status', event);
          lastWrite = Date.now();
        }
      }
      const waiting = [...current.values()].filter((e) => !finished(e)).map((e) => e._id);
      if (waiting.length === 0) {
        send('end', {});
        return close();
      }
      if (Date.now() - started >= maxMs) return close();
      if (Date.now() - lastWrite >= heartbeatMs) {
        if (open) stream.write(': keep-alive\n\n');
        lastWrite = Date.now();
      }
      await sleep(intervalMs);
      if (!open) return;
      try {
        // A role changed meanwhile applies too (an admin made a doctor sees only their patients).
        viewer = await opts.reauthorize();
      } catch {
        return close();
      }
      current = new Map();
      for (const id of waiting) current.set(id, await statusEvent(deps, viewer, id));
    }
  };
  run().catch((err: unknown) => {
    opts.onError(err);
    close();
  });
  return { stream, close };
}
