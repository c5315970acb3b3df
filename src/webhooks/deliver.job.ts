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

export function webhookDeliveryJob(deps: WebhookDeliveryDeps): JobDefinition<typeof WebhookDeliveryPayloadSchema> {
  const { db, timeoutMs, maxAttempts, allowPrivate } = deps;
  const send = deps.send ?? sendWebhook;
  const now = deps.now ?? (() => new Date());

  return {
    name: WEBHOOK_DELIVERY_JOB,
    payload: WebhookDeliveryPayloadSchema,
    retryLimit: Math.max(0, maxAttempts - 1),
    // pg-boss doubles the delay each time, with jitter: ~2-4 s, 4-8 s, 8-16 s...
    retryDelaySeconds: 2,
    retryBackoff: true,
    // Well past the HTTP deadline: an active delivery older than this lost its worker.
    expireInSeconds: Math.ceil(timeoutMs / 1000) + 60,
    async handler(payload, { attempt, log }) {
      const { webhookId, messageId, eventType, patientId, body } = payload;
      const target = await repo.deliveryTarget(db, { webhookId, patientId });
      if (!target) {
        log.info({ webhookId }, 'webhook deleted; delivery skipped');
        return;
      }
      if (!target.isActive || !target.ownerActive) {
        log.info({ webhookId }, 'webhook or its owner is inactive; delivery skipped');
        return;
      }
      if (!target.ownerMaySeePatient) {
        log.info({ webhookId }, "the webhook's owner may no longer see this patient; delivery skipped");
        return;
      }
      if (await repo.wasDelivered(db, { webhookId, messageId })) {
        log.info({ webhookId, messageId }, 'message already delivered; skipping');
        return;
      }

      try {
        const started = performance.now();
        const lastTry = attempt >= maxAttempts;
        const record = (outcome: { statusCode: number | null; error: string | null; succeeded: boolean }) =>
          repo
            .insertDelivery(db, {
              webhookId,
              messageId,
              eventType,
              attempt,
              durationMs: Math.round(performance.now() - started),
              ...outcome,
            })
            .catch((err: unknown) => {
              throw isForeignKeyViolation(err) ? new WebhookDeletedError() : err;
            });
        const failed = (reason: 'network' | 'status' | 'refused') => deps.metrics?.webhookFailures.inc({ reason });
        const retryOrGiveUp = async (error: string, statusCode: number | null) => {
          failed(statusCode === null ? 'network' : 'status');
          await record({ statusCode, error: lastTry ? `${error}; giving up after ${attempt} attempts` : error, succeeded: false });
          if (lastTry) throw new PermanentJobError(`delivery failed after ${attempt} attempts: ${error}`);
          throw new Error(`delivery failed, will retry: ${error}`);
        };

        const url = new URL(target.url);
        let addresses;
        try {
          addresses = await vetTarget(url, { allowPrivate, resolve: deps.resolve });
        } catch (err) {
          if (err instanceof TargetRefusedError) {
            failed('refused');
            await record({ statusCode: null, error: `target refused: ${err.message}`, succeeded: false });
            throw new PermanentJobError(`target refused: ${err.message}`);
          }
          return await retryOrGiveUp(`could not resolve ${url.hostname}: ${describeNetworkError(err)}`, null);
        }

        const sentAt = now();
        const headers = {
          'content-type': 'application/json',
          'user-agent': USER_AGENT,
          'webhook-id': messageId,
          'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
          'webhook-signature': new Webhook(target.secret).sign(messageId, sentAt, body),
        };
        let statusCode: number;
        try {
          ({ statusCode } = await send({ url, addresses, headers, body, timeoutMs }));
        } catch (err) {
          return await retryOrGiveUp(describeNetworkError(err), null);
        }

        if (statusCode >= 200 && statusCode < 300) {
          await record({ statusCode, error: null, succeeded: true });
          log.info({ webhookId, messageId, eventType, statusCode, attempt }, 'webhook delivered');
          return;
        }
        if (isRetryableStatus(statusCode)) return await retryOrGiveUp(`the receiver answered ${statusCode}`, statusCode);
        const error =
          statusCode >= 300 && statusCode < 400
            ? `the receiver answered ${statusCode}, a redirect; redirects are not followed: point the webhook at the final URL`
            : `the receiver answered ${statusCode}; not retried (only 408, 429 and 5xx are)`;
        failed('status');
        await record({ statusCode, error, succeeded: false });
        throw new PermanentJobError(error);
      } catch (err) {
        if (!(err instanceof WebhookDeletedError)) throw err;
        log.info({ webhookId, messageId }, 'webhook deleted during its delivery; the attempt is not recorded or retried');
      }
    },
  };
}
