/**
 * Turns scan events into queued webhook deliveries, inside the transaction that changed the
 * scan: an event is delivered if and only if its change is committed.
 *
 * Who receives what: a webhook receives an event only if its owner may see the patient, the
 * same rule as the API (admins every patient, a doctor those assigned to them), and only
 * while the webhook and its owner are active. The payload is thin (ids and status); the
 * receiver reads details with its own credentials, so each read stays authorised.
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import type { JobDefinition, Queue } from '../platform/queue/index.js';
import * as repo from './repository.js';
import type { EventPublisher, ScanEvent, WebhookDeliveryPayloadSchema } from './types.js';

export interface EventPublisherDeps {
  queue: Pick<Queue, 'send'>;
  deliveryJob: JobDefinition<typeof WebhookDeliveryPayloadSchema>;
  /** The clock that stamps events (tests fix it). */
  now?: () => Date;
}

/** A Standard Webhooks message id, unique per event and webhook, kept across retries. */
function newMessageId(): string {
  return `msg_${randomBytes(18).toString('base64url')}`;
}

/** The body every receiver gets: exactly these fields, nothing about the patient but the id. */
function eventBody(event: ScanEvent, at: Date): string {
  return JSON.stringify({
    type: event.type,
    timestamp: at.toISOString(),
    data: { scanId: event.scanId, patientId: event.patientId, status: event.status },
  });
}

export function createEventPublisher(deps: EventPublisherDeps): EventPublisher {
  const now = deps.now ?? (() => new Date());
  return {
    async publish(tx, event) {
      const subscribers = await repo.subscribersOf(tx, { type: event.type, patientId: event.patientId });
      if (subscribers.length === 0) return;
      const body = eventBody(event, now());
      for (const { id } of subscribers) {
        await deps.queue.send(
          deps.deliveryJob,
          { webhookId: id, messageId: newMessageId(), eventType: event.type, patientId: event.patientId, body },
          { tx },
        );
      }
    },
    hasSubscribers(db, event) {
      return sql<boolean>`exists (${repo.subscribersQuery(db, event)})`;
    },
  };
}
