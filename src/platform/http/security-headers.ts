/**
 * Response headers for a server of patient data (helmet): no caching of anything the API
 * answers, no MIME sniffing, HTTPS pinned (HSTS), no framing, no referrer (signed links carry
 * their signature in the query), and a Content-Security-Policy that lets the web app and
 * Swagger UI run their own scripts only.
 *
 * helmet's middleware is built once, here, and run on every request. @fastify/helmet built it
 * anew for every request (parsing the CSP directives each time: 14.5% of `GET /api/auth/me`'s
 * main thread, docs/benchmarks/api.md); none of its extras (per-route options, CSP nonces,
 * `reply.helmet()`) are used here, and these headers never vary per request.
 */
import type { FastifyInstance } from 'fastify';
import helmet from 'helmet';

/** helmet's options: the one place the headers are configured. */
const HELMET_OPTIONS: Parameters<typeof helmet>[0] = {
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
};

/** Registers on the root instance, before any route, so every answer (errors, 404s, files) has them. */
export async function registerSecurityHeaders(app: FastifyInstance): Promise<void> {
  // Options are validated (and the CSP parsed) here, at start-up: a bad directive fails the boot.
  const setHeaders = helmet(HELMET_OPTIONS);
  // On the raw response, as @fastify/helmet did: a route's own header (the web app's and
  // Swagger UI's CSP) still replaces one of these, and a hijacked reply keeps them.
  app.addHook('onRequest', (request, reply, done) => {
    setHeaders(request.raw, reply.raw, (err) => done(err as Error | undefined));
  });
  // Patient data must not stay in a browser's or a proxy's cache: every answer is no-store
  // unless its route chose otherwise (static web app and docs assets, which hold no data).
  app.addHook('onSend', async (_request, reply, payload) => {
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    return payload;
  });
}
