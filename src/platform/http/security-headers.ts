/**
 * Response headers for a server of patient data (@fastify/helmet): no caching of anything
 * the API answers, no MIME sniffing, HTTPS pinned (HSTS), no framing, no referrer (signed
 * links carry their signature in the query), and a Content-Security-Policy that lets the web
 * app and Swagger UI run their own scripts only.
 */
import helmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';

/** Registers on the root instance (helmet is a global plugin), before any route. */
export async function registerSecurityHeaders(app: FastifyInstance): Promise<void> {
  await app.register(helmet, {
    global: true,
    contentSecurityPolicy: {
      useDefaults: true,
      directives: {
        'default-src': ["'self'"],
        'img-src': ["'self'", 'data:', 'blob:'],
        'frame-ancestors': ["'none'"],
        'form-action': ["'self'"],
        'object-src': ["'none'"],
        // A deployment on plain http (a laptop, a closed ward network) must keep working.
        'upgrade-insecure-requests': null,
      },
    },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    strictTransportSecurity: { maxAge: 31_536_000, includeSubDomains: true },
    crossOriginResourcePolicy: { policy: 'same-origin' },
  });
  // Patient data must not stay in a browser's or a proxy's cache: every answer is no-store
  // unless its route chose otherwise (static web app and docs assets, which hold no data).
  app.addHook('onSend', async (_request, reply, payload) => {
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    return payload;
  });
}
