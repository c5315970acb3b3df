/**
 * The API's documentation: Swagger UI at /docs and the OpenAPI document at /openapi.json.
 * API_DOCS=on (default) serves them to anyone, off not at all, auth only to a signed-in user:
 * a bearer token (API clients) or HTTP Basic with the user's email and password (a browser
 * opening /docs), checked and throttled like a login.
 */
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AppContext } from '../../context.js';
import { AppError } from '../errors.js';
import { auditRefusedSignIn } from '../../audit/log.js';
import { signIn } from '../../auth/sign-in.js';

function basicCredentials(request: FastifyRequest): { email: string; password: string } | null {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(request.headers.authorization ?? '');
  if (!match) return null;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 1) return null;
  return { email: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

export async function registerApiDocs(app: FastifyInstance, ctx: AppContext): Promise<void> {
  const mode = ctx.config.apiDocs;
  if (mode === 'off') return;

  async function requireSignedIn(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const basic = basicCredentials(request);
    if (basic) {
      try {
        await signIn(ctx, { email: basic.email, password: basic.password, ip: request.ip });
        return;
      } catch (err) {
        if (err instanceof AppError && (err.status === 401 || err.status === 403)) reply.header('www-authenticate', 'Basic realm="ImageMedix API docs"');
        // A wrong password here is a failed sign-in like any other: in the audit trail.
        if (err instanceof AppError) await auditRefusedSignIn(ctx, request, { email: basic.email, statusCode: err.status, method: 'basic (API docs)' });
        throw err;
      }
    }
    if (!request.headers.authorization) {
      reply.header('www-authenticate', 'Basic realm="ImageMedix API docs"');
      throw new AppError('unauthorized', 'The API documentation is for signed-in users: sign in with your email and password');
    }
    // The same hook as every API route; it is async, though Fastify's type allows a callback.
    const checked: unknown = ctx.authenticate.call(app, request, reply, () => undefined);
    await checked;
  }
  const guard = mode === 'auth' ? { onRequest: requireSignedIn } : {};

  await app.register(swaggerUi, {
    routePrefix: '/docs',
    uiHooks: guard,
    // Swagger UI's own CSP (scripts from this server only). Its bundle sets inline styles, so
    // styles may be inline; http deployments keep working without upgrade-insecure-requests.
    staticCSP: true,
    transformStaticCSP: (header) =>
      header.replace(/\s*upgrade-insecure-requests;?/, '').replace(/style-src ([^;]*);/, "style-src $1 'unsafe-inline';"),
  });
  app.get('/openapi.json', { schema: { hide: true }, config: { rateLimit: false }, ...guard }, async () => app.swagger());
}
