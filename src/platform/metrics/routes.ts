/**
 * GET /metrics for Prometheus. Off unless METRICS_TOKEN is set; then the scraper sends
 * `Authorization: Bearer <token>` (Prometheus: `authorization: { credentials: ... }`).
 * Counts and timings only, but a deployment's load and failures are not for everyone.
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Metrics } from './index.js';

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function registerMetricsRoute(app: FastifyInstance, metrics: Metrics, token: string): void {
  app.get('/metrics', { schema: { hide: true }, config: { rateLimit: false } }, async (request, reply) => {
    const match = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '');
    if (!match || !sameSecret(match[1]!, token)) {
      return reply
        .code(401)
        .header('www-authenticate', 'Bearer')
        .send({ error: 'Metrics need "Authorization: Bearer <METRICS_TOKEN>"' });
    }
    return reply.type(metrics.registry.contentType).send(await metrics.render());
  });
}

/** Request latency by route pattern, recorded when the response is sent. */
export function recordRequestLatency(app: FastifyInstance, metrics: Metrics): void {
  app.addHook('onResponse', (request, reply, done) => {
    metrics.httpDuration.observe(
      { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
    done();
  });
}
