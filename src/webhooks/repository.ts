import { and, count, desc, eq, or, sql, type SQLWrapper } from 'drizzle-orm';
import { userMaySeePatient, webhooksManageableBy, type Viewer, type WebhookRow } from '../access/index.js';
import { builtOncePerDb, type DbOrTx } from '../platform/db/index.js';
import { users, webhookDeliveries, webhooks } from '../platform/db/schema.js';
import type { WebhookEventType } from './types.js';

export type { WebhookRow };
export type DeliveryRow = typeof webhookDeliveries.$inferSelect;

/** Locks the owner's row so concurrent creations cannot both pass the per-user limit. */
export async function lockOwner(tx: DbOrTx, ownerId: string): Promise<void> {
  await tx.select({ id: users.id }).from(users).where(eq(users.id, ownerId)).for('update');
}

export async function countWebhooksOf(tx: DbOrTx, ownerId: string): Promise<number> {
  const [row] = await tx.select({ n: count() }).from(webhooks).where(eq(webhooks.ownerId, ownerId));
  return row?.n ?? 0;
}

export async function insertWebhook(tx: DbOrTx, values: typeof webhooks.$inferInsert): Promise<WebhookRow> {
  const [row] = await tx.insert(webhooks).values(values).returning();
  return row!;
}

export async function listWebhooks(db: DbOrTx, viewer: Viewer): Promise<WebhookRow[]> {
  return db.select().from(webhooks).where(webhooksManageableBy(viewer)).orderBy(desc(webhooks.createdAt), desc(webhooks.id));
}

export async function deleteWebhookRow(db: DbOrTx, id: string): Promise<void> {
  await db.delete(webhooks).where(eq(webhooks.id, id));
}

export async function deliveriesOf(db: DbOrTx, webhookId: string, limit: number): Promise<DeliveryRow[]> {
  return db
    .select()
    .from(webhookDeliveries)
    .where(eq(webhookDeliveries.webhookId, webhookId))
    .orderBy(desc(webhookDeliveries.createdAt), desc(webhookDeliveries.attempt))
    .limit(limit);
}

/** The webhook's owner may see the patient: the rule of src/access. */
const ownerMaySeePatient = (patientId: string | SQLWrapper) => userMaySeePatient({ role: users.role, id: webhooks.ownerId }, patientId);

/**
 * Active webhooks of active users that subscribe to the event type and whose owner may see the
 * patient. `type` and `patientId` are values or placeholders. `newPatientOwner`, for a statement
 * that creates the patient and its assignment itself (an upload's one statement): the user
 * that statement assigns, as SQL; the statement's own snapshot cannot see that assignment yet.
 */
function selectSubscribers(db: DbOrTx, type: WebhookEventType | SQLWrapper, patientId: string | SQLWrapper, newPatientOwner?: SQLWrapper) {
  const mayReceive = newPatientOwner ? or(ownerMaySeePatient(patientId), eq(webhooks.ownerId, sql`${newPatientOwner}`)) : ownerMaySeePatient(patientId);
  return db
    .select({ id: webhooks.id })
    .from(webhooks)
    .innerJoin(users, eq(users.id, webhooks.ownerId))
    .where(
      and(
        eq(webhooks.isActive, true),
        eq(users.isActive, true),
        sql`${webhooks.events} @> array[${type}]::text[]`,
        mayReceive,
      ),
    );
}

/** The subscribers of an event as a query not yet run (a caller may embed it in a statement of its own). */
export function subscribersQuery(
  db: DbOrTx,
  { type, patientId, newPatientOwner }: { type: WebhookEventType | SQLWrapper; patientId: string | SQLWrapper; newPatientOwner?: SQLWrapper },
) {
  return selectSubscribers(db, type, patientId, newPatientOwner);
}

/** The same query built once, with the event type and patient as placeholders: every upload runs it. */
const subscribersStatement = builtOncePerDb('webhook_subscribers', (db) =>
  selectSubscribers(db, sql.placeholder('type'), sql.placeholder('patientId')),
);

export async function subscribersOf(
  tx: DbOrTx,
  event: { type: WebhookEventType; patientId: string },
): Promise<Array<{ id: string }>> {
  return subscribersStatement(tx).execute({ type: event.type, patientId: event.patientId });
}

export interface DeliveryTarget {
  url: string;
  secret: string;
  isActive: boolean;
  ownerActive: boolean;
  ownerMaySeePatient: boolean;
}

/** What a delivery needs to know about its webhook, re-read at delivery time; null once deleted. */
export async function deliveryTarget(
  db: DbOrTx,
  { webhookId, patientId }: { webhookId: string; patientId: string },
): Promise<DeliveryTarget | null> {
  const [row] = await db
    .select({
      url: webhooks.url,
      secret: webhooks.secret,
      isActive: webhooks.isActive,
      ownerActive: users.isActive,
      ownerMaySeePatient: ownerMaySeePatient(patientId),
    })
    .from(webhooks)
    .innerJoin(users, eq(users.id, webhooks.ownerId))
    .where(eq(webhooks.id, webhookId));
  return row ?? null;
}

export async function wasDelivered(db: DbOrTx, { webhookId, messageId }: { webhookId: string; messageId: string }) {
  const [row] = await db
    .select({ id: webhookDeliveries.id })
    .from(webhookDeliveries)
    .where(
      and(
        eq(webhookDeliveries.webhookId, webhookId),
        eq(webhookDeliveries.messageId, messageId),
        eq(webhookDeliveries.succeeded, true),
      ),
    )
    .limit(1);
  return row !== undefined;
}

export async function insertDelivery(db: DbOrTx, values: typeof webhookDeliveries.$inferInsert): Promise<void> {
  await db.insert(webhookDeliveries).values(values);
}
