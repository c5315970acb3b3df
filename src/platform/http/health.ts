import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { isDatabaseUnreachable } from '../db/errors.js';
import type { Database } from '../db/index.js';
import { RETRY_AFTER_SECONDS } from '../errors.js';
import { scrubError } from '../logging.js';

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
          // An outage is expected and ends by itself (the load balancer looks again): a warning,
          // as for any request that meets it. Any other failure (a password changed) wants a person.
          if (isDatabaseUnreachable(err)) {
            request.log.warn({ database: scrubError(err, { query: false }) }, 'the database is not reachable: not ready, answered 503');
          } else {
            request.log.error({ database: scrubError(err, { query: false }) }, 'readiness check failed');
          }
          return reply
            .code(503)
            .header('retry-after', String(RETRY_AFTER_SECONDS.databaseOutage))
            .send({ error: 'The database is not reachable' });
        }
      },
    );
  };
}
