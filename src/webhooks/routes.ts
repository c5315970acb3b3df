/**
 * Webhook subscriptions, mounted at /api/webhooks. Each event (scan.uploaded, scan.analyzed,
 * scan.failed) is POSTed as `{type, timestamp, data: {scanId, patientId, status}}`, signed
 * by the Standard Webhooks scheme with the secret returned once at creation.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { currentUser } from '../auth/hooks.js';
import type { AppContext, Feature } from '../context.js';
import { authErrors, ErrorSchema, IdParamsSchema, MessageSchema } from '../platform/http/schemas.js';
import {
  CreatedWebhookSchema,
  CreateWebhookBodySchema,
  DeliveriesQuerySchema,
  DeliveryListSchema,
  WebhookListSchema,
} from './schemas.js';
import * as webhooks from './service.js';

function webhookRoutes(ctx: AppContext): FastifyPluginAsyncTypebox {
  const policy = { allowPrivate: ctx.config.webhooks.allowPrivate };
  return async (app) => {
    app.addHook('onRequest', ctx.authenticate);
    const tags = ['Webhooks'];
    const security = [{ bearerAuth: [] }];

    app.post(
      '/',
      {
        config: { audit: { action: 'webhook.create', resource: 'webhook' } },
        schema: {
          tags,
          security,
          summary: 'Subscribe a URL to scan events; the signing secret is shown in this response only',
          body: CreateWebhookBodySchema,
          response: { 201: CreatedWebhookSchema, ...authErrors, 409: ErrorSchema },
        },
      },
      async (request, reply) => {
        const created = await webhooks.createWebhook(ctx.db, { viewer: currentUser(request), input: request.body, policy });
        request.log.info({ webhook: created._id, events: created.events }, 'webhook created');
        return reply.code(201).send(created);
      },
    );

    app.get(
      '/',
      {
        config: { audit: { action: 'webhook.list', resource: 'webhook' } },
        schema: {
          tags,
          security,
          summary: 'Your webhooks (every webhook for admins), without their secrets',
          response: { 200: WebhookListSchema, ...authErrors },
        },
      },
      async (request) => webhooks.listWebhooks(ctx.db, { viewer: currentUser(request) }),
    );

    app.delete(
      '/:id',
      {
        config: { audit: { action: 'webhook.delete', resource: 'webhook' } },
        schema: {
          tags,
          security,
          summary: 'Delete a webhook and its delivery log; deliveries still queued are dropped',
          params: IdParamsSchema,
          response: { 200: MessageSchema, ...authErrors },
        },
      },
      async (request) => {
        await webhooks.deleteWebhook(ctx.db, { viewer: currentUser(request), id: request.params.id });
        request.log.info({ webhook: request.params.id }, 'webhook deleted');
        return { message: 'Webhook deleted' };
      },
    );

    app.get(
      '/:id/deliveries',
      {
        config: { audit: { action: 'webhook.read_deliveries', resource: 'webhook' } },
        schema: {
          tags,
          security,
          summary: 'Delivery attempts of a webhook, newest first: status code, duration and error of each',
          params: IdParamsSchema,
          querystring: DeliveriesQuerySchema,
          response: { 200: DeliveryListSchema, ...authErrors },
        },
      },
      async (request) =>
        webhooks.listDeliveries(ctx.db, {
          viewer: currentUser(request),
          id: request.params.id,
          limit: request.query.limit,
        }),
    );
  };
}

/** Webhook subscriptions. */
export const webhooksFeature: Feature = { prefix: '/api/webhooks', routes: webhookRoutes };
