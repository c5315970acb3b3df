/** What the webhooks page says of one delivery attempt's retry state. Pure, tested under node. */

export interface DeliveryState {
  succeeded: boolean;
  gaveUp: boolean;
  nextRetryAt: string | null;
}

export type RetryStateKind = 'delivered' | 'gave-up' | 'scheduled' | 'due' | 'retried';

/**
 * - delivered: this attempt succeeded;
 * - gave-up: it failed and was the event's last;
 * - scheduled / due: it failed and a retry is queued, in the future or due now (waiting for a
 *   worker or running);
 * - retried: it failed and a later attempt of the same event followed.
 */
export function retryState(d: DeliveryState, now: number): { kind: RetryStateKind; at: number | null } {
  if (d.succeeded) return { kind: 'delivered', at: null };
  if (d.gaveUp) return { kind: 'gave-up', at: null };
  if (d.nextRetryAt !== null) {
    const at = Date.parse(d.nextRetryAt);
    return { kind: Number.isFinite(at) && at > now ? 'scheduled' : 'due', at: Number.isFinite(at) ? at : null };
  }
  return { kind: 'retried', at: null };
}

/**
 * When to read the delivery log again, in ms, while some retry is queued: a second after the
 * earliest is due (between 2 and 30 s from now); null when nothing is waiting.
 */
export function nextRefreshIn(deliveries: DeliveryState[], now: number): number | null {
  let earliest: number | null = null;
  for (const d of deliveries) {
    if (d.succeeded || d.gaveUp || d.nextRetryAt === null) continue;
    const at = Date.parse(d.nextRetryAt);
    if (Number.isFinite(at) && (earliest === null || at < earliest)) earliest = at;
  }
  if (earliest === null) return null;
  return Math.min(30_000, Math.max(2_000, earliest - now + 1_000));
}
