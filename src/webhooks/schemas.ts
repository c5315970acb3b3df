import { Type, type Static, type TUnsafe } from '@sinclair/typebox';
import { IsoDateTime, Nullable } from '../platform/http/schemas.js';
import { WEBHOOK_EVENTS, type WebhookEventType } from './types.js';

export const MAX_WEBHOOKS_PER_USER = 25;

/**
 * A string enum rather than a union of literals, so an unknown event is reported as "must be
 * equal to one of the allowed values" instead of a failed match against the first literal.
 * The intersection lets the route type provider (which infers from the JSON Schema) see it.
 */
const eventEnum = { type: 'string', enum: WEBHOOK_EVENTS, description: `One of ${WEBHOOK_EVENTS.join(', ')}` } as const;
const WebhookEventSchema = Type.Unsafe<WebhookEventType>({ ...eventEnum, enum: [...WEBHOOK_EVENTS] }) as TUnsafe<WebhookEventType> &
  typeof eventEnum;

export const CreateWebhookBodySchema = Type.Object(
  {
    url: Type.String({
      // A scheme is all the schema asks: Ajv's 'uri' format refuses internationalised host
      // names (https://bücher.example), which WHATWG URL parsing (service.ts) accepts as punycode.
      pattern: '^[A-Za-z][A-Za-z0-9+.-]*:',
      'x-pattern-hint': 'an absolute URL such as https://hooks.example.org/imagemedix',
      maxLength: 2048,
      description:
        'Absolute https URL that receives the events (http is accepted only where WEBHOOK_ALLOW_PRIVATE=true). ' +
        'Private, loopback and link-local targets are refused unless WEBHOOK_ALLOW_PRIVATE=true.',
    }),
    events: Type.Array(WebhookEventSchema, { minItems: 1, maxItems: WEBHOOK_EVENTS.length, uniqueItems: true }),
    description: Type.Optional(Type.String({ maxLength: 500 })),
  },
  { additionalProperties: false },
);
export type CreateWebhookBody = Static<typeof CreateWebhookBodySchema>;

const webhookFields = {
  _id: Type.String(),
  ownerId: Type.String({ description: 'The user who receives these events' }),
  url: Type.String(),
  events: Type.Array(WebhookEventSchema),
  description: Nullable(Type.String()),
  isActive: Type.Boolean(),
  createdAt: IsoDateTime,
};

const WebhookSchema = Type.Object(webhookFields);
export type Webhook = Static<typeof WebhookSchema>;

export const CreatedWebhookSchema = Type.Object({
  ...webhookFields,
  secret: Type.String({
    description:
      'The signing secret (whsec_...), shown only in this response: verify each delivery with it ' +
      '(Standard Webhooks: webhook-id, webhook-timestamp, webhook-signature).',
  }),
});
export type CreatedWebhook = Static<typeof CreatedWebhookSchema>;

export const WebhookListSchema = Type.Object({ webhooks: Type.Array(WebhookSchema) });

export const DeliveriesQuerySchema = Type.Object(
  { limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }) },
  { additionalProperties: false },
);

const DeliverySchema = Type.Object({
  _id: Type.String(),
  messageId: Type.String({ description: 'The webhook-id header: the same for every attempt of one event' }),
  eventType: WebhookEventSchema,
  attempt: Type.Integer({ description: '1 for the first try, 2 for the first retry...' }),
  statusCode: Nullable(Type.Integer({ description: "The receiver's HTTP status; null when none came back" })),
  durationMs: Nullable(Type.Integer()),
  error: Nullable(Type.String({ description: 'Why the attempt failed; null when it succeeded' })),
  succeeded: Type.Boolean(),
  createdAt: IsoDateTime,
  nextRetryAt: Type.Union([IsoDateTime, Type.Null()], {
    description:
        "On the latest failed attempt of an event whose retry is queued: when the queue's backoff makes it due " +
        '(in the past while it waits for a worker or runs); null otherwise',
  }),
  gaveUp: Type.Boolean({
    description:
      'True on the latest failed attempt of an event that will not be tried again (attempts used up, an answer ' +
      'that is not retried, or a refused target)',
  }),
});

export type Delivery = Static<typeof DeliverySchema>;

export const DeliveryListSchema = Type.Object({ deliveries: Type.Array(DeliverySchema) });
