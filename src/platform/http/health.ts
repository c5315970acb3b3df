import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Database } from '../db/index.js';
import { RETRY_AFTER_SECONDS } from '../errors.js';

/** Liveness and readiness probes; not rate limited, so a load balancer can poll them. */
export function healthRoutes(database: Pick<Database, 'kind' | 'ping'>): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get(
      '/healthz',
      {
        config: { rateLimit: false },
        schema: { tags: ['Health'], summary: 'The process is up', response: { 200: Type.Object({ status: Type.Literal('ok') }) } },
      },
      async () => ({ status: 'ok' as const }),
    );
    app.get(
      '/readyz',
      {
        config: { rateLimit: false },
        schema: {
          tags: ['Health'],
          summary: 'The database is reachable',
          description: `503, with Retry-After (${RETRY_AFTER_SECONDS.databaseOutage} seconds), while the database cannot be reached.`,
          response: {
            200: Type.Object({ status: Type.Literal('ready'), database: Type.String() }),
            503: Type.Object({ error: Type.String() }),
          },
        },
      },
      async (request, reply) => {
        try {
          await database.ping();
          return { status: 'ready' as const, database: database.kind };
        } catch (err) {
          request.log.error({ err }, 'readiness check failed');
          return reply
            .code(503)
            .header('retry-after', String(RETRY_AFTER_SECONDS.databaseOutage))
            .send({ error: 'The database is not reachable' });
        }
      },
    );
  };
}
