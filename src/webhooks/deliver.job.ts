/**
 * The delivery job: POSTs one event to one webhook, signed by the Standard Webhooks scheme,
 * and records every attempt in webhook_deliveries (the log GET /:id/deliveries shows).
 *
 * - Success is a 2xx answer. 5xx, 408, 429, timeouts and network errors are retried by
 *   pg-boss with exponential backoff; any other answer (3xx, since redirects are not
 *   followed, and 4xx) and a refused target fail for good, because sending the same bytes
 *   to the same URL again cannot change the outcome.
 * - The body and webhook-id are fixed at publish time, so every attempt sends identical
 *   bytes under one id. webhook-timestamp is the time of the attempt (and the signature is
 *   made anew), since receivers reject timestamps older than a few minutes and retries run
 *   later than that.
 * - Safe to run twice: a message already delivered to a webhook is not sent again, and a
 *   webhook that was deleted, deactivated, or whose owner may no longer see the patient is
 *   skipped, and so is one deleted while its delivery was in flight.
 */
import { Webhook } from 'standardwebhooks';
import type { Db } from '../platform/db/index.js';
import { isForeignKeyViolation } from '../platform/db/errors.js';
import { PermanentJobError, type JobDefinition } from '../platform/queue/index.js';
import { sendWebhook, type WebhookSender } from './http.js';
import * as repo from './repository.js';
import { TargetRefusedError, vetTarget, type HostResolver } from './target.js';
import { WebhookDeliveryPayloadSchema } from './types.js';
import type { Metrics } from '../platform/metrics/index.js';

export const WEBHOOK_DELIVERY_JOB = 'webhook-delivery';
const USER_AGENT = 'ImageMedix-Webhooks/1.0';

export interface WebhookDeliveryDeps {
  db: Db;
  timeoutMs: number;
  /** Attempts in all, the first included. */
  maxAttempts: number;
  allowPrivate: boolean;
  /** The HTTP client (tests swap it); defaults to node:http with pinned addresses. */
  send?: WebhookSender;
  /** DNS (tests swap it); defaults to dns.lookup of every address. */
  resolve?: HostResolver;
  /** The clock for webhook-timestamp. */
  now?: () => Date;
  /** Counts failed attempts (imagemedix_webhook_delivery_failures_total). */
  metrics?: Pick<Metrics, 'webhookFailures'>;
}

/** The webhook was deleted while its delivery was in flight: its log went with it (cascade). */
class WebhookDeletedError extends Error {
  override name = 'WebhookDeletedError';
}

/** Answers worth another try: the receiver is down, overloaded or slow. */
function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

function describeNetworkError(err: unknown): string {
  const e = err as { name?: string; code?: string; message?: string };
  if (e?.name === 'DeliveryTimeoutError') return e.message ?? 'timed out';
  return e?.code ? `${e.code}: ${e.message ?? 'network error'}` : (e?.message ?? 'network error');
}

/** What one attempt came to, before anything is recorded. */
type Outcome =
  | { kind: 'delivered'; statusCode: number }
  /** Worth another try (network, 408, 429, 5xx), unless this was the last. */
  | { kind: 'retryable'; statusCode: number | null; error: string }
  /** Sending the same bytes to the same URL again cannot change it. */
  | { kind: 'final'; statusCode: number | null; error: string; reason: 'status' | 'refused' };

/** Why a queued delivery is not sent at all; null when it goes. */
function skipReason(target: NonNullable<Awaited<ReturnType<typeof repo.deliveryTarget>>>): string | null {
  if (!target.isActive || !target.ownerActive) return 'webhook or its owner is inactive; delivery skipped';
  if (!target.ownerMaySeePatient) return "the webhook's owner may no longer see this patient; delivery skipped";
  return null;
}

/** Vets the target, signs and sends the body once, and says how it went. Writes nothing. */
async function attempt(
  deps: WebhookDeliveryDeps,
  target: { url: string; secret: string },
  message: { messageId: string; body: string },
): Promise<Outcome> {
  const url = new URL(target.url);
  let addresses;
  try {
    addresses = await vetTarget(url, { allowPrivate: deps.allowPrivate, resolve: deps.resolve });
  } catch (err) {
    if (err instanceof TargetRefusedError) return { kind: 'final', statusCode: null, error: `target refused: ${err.message}`, reason: 'refused' };
    return { kind: 'retryable', statusCode: null, error: `could not resolve ${url.hostname}: ${describeNetworkError(err)}` };
  }
  const sentAt = (deps.now ?? (() => new Date()))();
  const headers = {
    'content-type': 'application/json',
    'user-agent': USER_AGENT,
    'webhook-id': message.messageId,
    'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
    'webhook-signature': new Webhook(target.secret).sign(message.messageId, sentAt, message.body),
  };
  let statusCode: number;
  try {
    ({ statusCode } = await (deps.send ?? sendWebhook)({ url, addresses, headers, body: message.body, timeoutMs: deps.timeoutMs }));
  } catch (err) {
    return { kind: 'retryable', statusCode: null, error: describeNetworkError(err) };
  }
  if (statusCode >= 200 && statusCode < 300) return { kind: 'delivered', statusCode };
  if (isRetryableStatus(statusCode)) return { kind: 'retryable', statusCode, error: `the receiver answered ${statusCode}` };
  const error =
    statusCode >= 300 && statusCode < 400
      ? `the receiver answered ${statusCode}, a redirect; redirects are not followed: point the webhook at the final URL`
      : `the receiver answered ${statusCode}; not retried (only 408, 429 and 5xx are)`;
  return { kind: 'final', statusCode, error, reason: 'status' };
}

export function webhookDeliveryJob(deps: WebhookDeliveryDeps): JobDefinition<typeof WebhookDeliveryPayloadSchema> {
  const { db, timeoutMs, maxAttempts } = deps;

  return {
    name: WEBHOOK_DELIVERY_JOB,
    payload: WebhookDeliveryPayloadSchema,
    retryLimit: Math.max(0, maxAttempts - 1),
    // pg-boss doubles the delay each time, with jitter: ~2-4 s, 4-8 s, 8-16 s...
    retryDelaySeconds: 2,
    retryBackoff: true,
    // Well past the HTTP deadline: an active delivery older than this lost its worker.
    expireInSeconds: Math.ceil(timeoutMs / 1000) + 60,
    async handler(payload, { attempt: attemptNo, log }) {
      const { webhookId, messageId, eventType, patientId, body } = payload;
      const target = await repo.deliveryTarget(db, { webhookId, patientId });
      if (!target) {
        log.info({ webhookId }, 'webhook deleted; delivery skipped');
        return;
      }
      const skip = skipReason(target);
      if (skip) {
        log.info({ webhookId }, skip);
        return;
      }
      if (await repo.wasDelivered(db, { webhookId, messageId })) {
        log.info({ webhookId, messageId }, 'message already delivered; skipping');
        return;
      }

      const started = performance.now();
      const outcome = await attempt(deps, target, { messageId, body });
      const lastTry = attemptNo >= maxAttempts;
      const error =
        outcome.kind === 'delivered' ? null : outcome.kind === 'retryable' && lastTry ? `${outcome.error}; giving up after ${attemptNo} attempts` : outcome.error;
      if (outcome.kind !== 'delivered') {
        deps.metrics?.webhookFailures.inc({ reason: outcome.kind === 'final' ? outcome.reason : outcome.statusCode === null ? 'network' : 'status' });
      }
      try {
        await repo
          .insertDelivery(db, {
            webhookId,
            messageId,
            eventType,
            attempt: attemptNo,
            durationMs: Math.round(performance.now() - started),
            statusCode: outcome.statusCode,
            error,
            succeeded: outcome.kind === 'delivered',
          })
          .catch((err: unknown) => {
            throw isForeignKeyViolation(err) ? new WebhookDeletedError() : err;
          });
      } catch (err) {
        if (!(err instanceof WebhookDeletedError)) throw err;
        log.info({ webhookId, messageId }, 'webhook deleted during its delivery; the attempt is not recorded or retried');
        return;
      }

      switch (outcome.kind) {
        case 'delivered':
          log.info({ webhookId, messageId, eventType, statusCode: outcome.statusCode, attempt: attemptNo }, 'webhook delivered');
          return;
        case 'final':
          throw new PermanentJobError(outcome.error);
        case 'retryable':
          if (lastTry) throw new PermanentJobError(`delivery failed after ${attemptNo} attempts: ${outcome.error}`);
          throw new Error(`delivery failed, will retry: ${outcome.error}`);
      }
    },
  };
}
