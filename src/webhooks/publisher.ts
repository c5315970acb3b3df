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
import { jobRecord, type JobDefinition, type Queue } from '../platform/queue/index.js';
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

/** Stands for the patient's id in a body made before the statement that knows it. */
const PATIENT_SLOT = '00000000-0000-4000-8000-00000000ffff';

/**
 * `newMessageId` in SQL: 18 random bytes (of two v4 UUIDs' random parts, 138 random bits) as
 * base64url, so each webhook of an event gets its own id inside one statement.
 */
const MESSAGE_ID_SQL = sql`'msg_' || rtrim(translate(encode(substring(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()) from 1 for 18), 'base64'), '+/', '-_'), '=')`;

export function createEventPublisher(deps: EventPublisherDeps): EventPublisher {
  const now = deps.now ?? (() => new Date());
  // The delivery job's settings, without its data (the statement adds each webhook's): the same
  // for every event, so made once, not per upload.
  const { data: _none, ...deliveryJob } = jobRecord(deps.deliveryJob, null);
  const deliveryJobJson = JSON.stringify(deliveryJob);
  return {
    deliveryRecords(db, patientId, newPatientOwner, value = (key) => sql.placeholder(key)) {
      const subscribers = repo.subscribersQuery(db, { type: value('event_type'), patientId, newPatientOwner }).as('subscriber');
      const data = sql`jsonb_build_object('webhookId', ${subscribers.id}, 'messageId', ${MESSAGE_ID_SQL}, 'eventType', ${value('event_type')}::text, 'patientId', ${patientId}, 'body', ${value('event_body_head')}::text || ${patientId} || ${value('event_body_tail')}::text)`;
      return sql`select ${value('delivery_job')}::jsonb || jsonb_build_object('data', ${data}) from ${subscribers}`;
    },
    deliveryValues(event) {
      const [head, tail] = eventBody({ ...event, patientId: PATIENT_SLOT }, now()).split(PATIENT_SLOT);
      return { event_type: event.type, event_body_head: head, event_body_tail: tail, delivery_job: deliveryJobJson };
    },
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
