import { Type, type Static } from '@sinclair/typebox';
import type { SQL, SQLWrapper } from 'drizzle-orm';
import type { DbOrTx } from '../platform/db/index.js';

export const WEBHOOK_EVENTS = ['scan.uploaded', 'scan.analyzed', 'scan.failed'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number];

/** Thin payload: ids and status only, never names or findings. */
export interface ScanEvent {
  type: WebhookEventType;
  scanId: string;
  /** The patient's `_id`. */
  patientId: string;
  status: string;
}

export interface EventPublisher {
  /** Records the event inside the caller's transaction; deliveries are queued with it. */
  publish(tx: DbOrTx, event: ScanEvent): Promise<void>;
  /**
   * An SQL condition, true when some webhook would receive the event: a change whose event
   * nobody receives queues no delivery, so it can be written in one statement guarded by
   * `not hasSubscribers(...)`, and in a transaction with `publish` otherwise. The type and patient
   * may be placeholders (a statement built once).
   */
  hasSubscribers(db: DbOrTx, event: { type: ScanEvent['type'] | SQLWrapper; patientId: string | SQLWrapper }): SQL<boolean>;
  /**
   * For a statement that writes the change and queues its deliveries itself (an upload's one
   * statement, built once): SQL giving the event's delivery jobs as pg-boss job records (a
   * jsonb per webhook that receives it), for the patient `patientId` (an SQL expression of
   * that statement). The event's type and body come from the placeholders `deliveryValues`
   * fills; the body is the one `publish` would send. `newPatientOwner`: the user the same
   * statement assigns to a patient it creates (SQL, null when it creates none), who receives it
   * too although the statement's snapshot does not show that assignment. `value`: where the
   * statement reads each of `deliveryValues`'s keys, placeholders by default; a statement that
   * writes several uploads at once reads them from each upload's row instead.
   */
  deliveryRecords(db: DbOrTx, patientId: SQL, newPatientOwner?: SQL, value?: (key: string) => SQLWrapper): SQL;
  deliveryValues(event: Omit<ScanEvent, 'patientId'>): Record<string, unknown>;
}

/**
 * One queued delivery of one event to one webhook. The body is fixed when the event is
 * published, so every retry sends the same bytes under the same `webhook-id`.
 */
export const WebhookDeliveryPayloadSchema = Type.Object({
  webhookId: Type.String(),
  /** The Standard Webhooks message id (`msg_...`), the receiver's de-duplication key. */
  messageId: Type.String(),
  eventType: Type.Union(WEBHOOK_EVENTS.map((event) => Type.Literal(event))),
  /** The patient `_id` of the event, to re-check at delivery that the owner may still see it. */
  patientId: Type.String(),
  /** The JSON body exactly as it will be sent. */
  body: Type.String(),
});
export type WebhookDeliveryPayload = Static<typeof WebhookDeliveryPayloadSchema>;
