/**
 * Webhook subscriptions. A user manages their own webhooks, an admin everyone's; someone
 * else's webhook answers exactly like a missing one (404). What a webhook receives is decided
 * when an event is published (publisher.ts): its owner must be allowed to see the patient.
 */
import { randomBytes } from 'node:crypto';
import type { Db } from '../platform/db/index.js';
import { pendingJobs } from '../platform/queue/index.js';
import { badRequest, conflict } from '../platform/errors.js';
import { requireManageableWebhook, type Viewer } from '../access/index.js';
import { WEBHOOK_DELIVERY_JOB } from './deliver.job.js';
import * as repo from './repository.js';
import type { CreatedWebhook, CreateWebhookBody, Delivery, Webhook } from './schemas.js';
import { MAX_WEBHOOKS_PER_USER } from './schemas.js';
import { TargetRefusedError, vetTarget, type TargetPolicy } from './target.js';
import type { WebhookEventType } from './types.js';

/** `whsec_` + base64 of 24 random bytes: the Standard Webhooks secret format. */
function generateSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

function view(row: repo.WebhookRow): Webhook {
  return {
    _id: row.id,
    ownerId: row.ownerId,
    url: row.url,
    events: row.events as WebhookEventType[],
    description: row.description,
    isActive: row.isActive,
    createdAt: row.createdAt.toISOString(),
  };
}

/**
 * Checks a target URL when the webhook is created, so a mistake is reported at once rather
 * than as failed deliveries. The delivery job checks again (DNS can change).
 */
async function checkUrl(raw: string, policy: TargetPolicy): Promise<string> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    // The schema let it through with a scheme, so what fails is its host or port.
    throw badRequest(`url "${raw.slice(0, 100)}" is not a usable URL: check its host and port (at most 65535)`);
  }
  // Event bodies carry patient and scan ids: outside a private deployment they go over TLS.
  const httpAllowed = policy.allowPrivate;
  if (url.protocol !== 'https:' && !(httpAllowed && url.protocol === 'http:')) {
    throw badRequest(
      httpAllowed
        ? `url must use https:// or http://, got "${url.protocol}"`
        : `url must use https://, got "${url.protocol}" (plain http:// is accepted only where WEBHOOK_ALLOW_PRIVATE=true)`,
    );
  }
  if (url.username || url.password) {
    throw badRequest('url must not contain credentials: verify the webhook-signature header instead');
  }
  if (!policy.allowPrivate) {
    try {
      await vetTarget(url, policy);
    } catch (err) {
      if (err instanceof TargetRefusedError) throw badRequest(`url refused: ${err.message}`);
      throw badRequest(`url host "${url.hostname}" could not be resolved; check the address`);
    }
  }
  return url.toString();
}

export async function createWebhook(
  db: Db,
  { viewer, input, policy }: { viewer: Viewer; input: CreateWebhookBody; policy: TargetPolicy },
): Promise<CreatedWebhook> {
  const url = await checkUrl(input.url, policy);
  const secret = generateSecret();
  const row = await db.transaction(async (tx) => {
    await repo.lockOwner(tx, viewer.id);
    if ((await repo.countWebhooksOf(tx, viewer.id)) >= MAX_WEBHOOKS_PER_USER) {
      throw conflict(`You already have ${MAX_WEBHOOKS_PER_USER} webhooks, the most allowed: delete one first`);
    }
    return repo.insertWebhook(tx, {
      ownerId: viewer.id,
      url,
      events: input.events,
      description: input.description?.trim() || null,
      secret,
    });
  });
  return { ...view(row), secret };
}

export async function listWebhooks(db: Db, { viewer }: { viewer: Viewer }): Promise<{ webhooks: Webhook[] }> {
  const rows = await repo.listWebhooks(db, viewer);
  return { webhooks: rows.map(view) };
}

/** Deletes a webhook with its delivery log; queued deliveries find it gone and are skipped. */
export async function deleteWebhook(db: Db, { viewer, id }: { viewer: Viewer; id: string }): Promise<void> {
  const row = await requireManageableWebhook(db, viewer, id);
  await repo.deleteWebhookRow(db, row.id);
}

/**
 * The delivery log with each event's retry state. Only the latest attempt of an event carries
 * it: if its delivery job is still in pg-boss's queue a retry is coming (`nextRetryAt`, the
 * backoff's due time), and a failed latest attempt whose job is gone was the last one (`gaveUp`).
 * The log is newest first, so an event's latest attempt is always within the page.
 */
export async function listDeliveries(
  db: Db,
  { viewer, id, limit }: { viewer: Viewer; id: string; limit: number },
): Promise<{ deliveries: Delivery[] }> {
  const row = await requireManageableWebhook(db, viewer, id);
  const deliveries = await repo.deliveriesOf(db, row.id, limit);
  const queued = new Map<string, Date>();
  if (deliveries.some((d) => !d.succeeded)) {
    for (const job of await pendingJobs(db, WEBHOOK_DELIVERY_JOB, { field: 'webhookId', value: row.id })) {
      const messageId = (job.data as { messageId?: unknown } | null)?.messageId;
      if (typeof messageId === 'string') queued.set(messageId, job.startAfter);
    }
  }
  const seen = new Set<string>();
  return {
    deliveries: deliveries.map((d) => {
      const latest = !seen.has(d.messageId);
      seen.add(d.messageId);
      const retryAt = latest && !d.succeeded ? queued.get(d.messageId) : undefined;
      return {
        _id: d.id,
        messageId: d.messageId,
        eventType: d.eventType as WebhookEventType,
        attempt: d.attempt,
        statusCode: d.statusCode,
        durationMs: d.durationMs,
        error: d.error,
        succeeded: d.succeeded,
        createdAt: d.createdAt.toISOString(),
        nextRetryAt: retryAt ? retryAt.toISOString() : null,
        gaveUp: latest && !d.succeeded && retryAt === undefined,
      };
    }),
  };
}
