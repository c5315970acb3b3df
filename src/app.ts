/**
 * Builds the Fastify application as a tree of feature plugins. It never listens: server.ts
 * owns the process, and tests call `app.inject` on what this returns.
 */
import cors from '@fastify/cors';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { evictUsersOnWrites } from './auth/hooks.js';
import { registerAuditHooks } from './audit/log.js';
import { analysisFeature } from './analysis/routes.js';
import { auditFeature } from './audit/routes.js';
import { googleSignInFeature } from './auth/google/feature.js';
import { rateLimitKey, rateLimitMax } from './auth/rate-limit-key.js';
import { authFeature } from './auth/routes.js';
import type { AppContext, Feature } from './context.js';
import { patientsFeature } from './patients/routes.js';
import { isDatabaseUnreachable } from './platform/db/errors.js';
import { AppError, databaseUnreachable, RETRY_AFTER_SECONDS } from './platform/errors.js';
import { registerApiDocs } from './platform/http/docs.js';
import { healthRoutes } from './platform/http/health.js';
import { registerSecurityHeaders } from './platform/http/security-headers.js';
import { rejectControlCharacters } from './platform/http/text-input.js';
import { clientErrorMessage, frameworkErrorMessage, validationMessage } from './platform/http/validation.js';
import { parseJsonAllowingEmpty } from './platform/http/json-body.js';
import { createValidatorCompiler } from './platform/http/validator.js';
import { loggerOptions, requestLoggerFactory, scrubError } from './platform/logging.js';
import { recordRequestLatency, registerMetricsRoute } from './platform/metrics/routes.js';
import { waitInWords } from './platform/wait-in-words.js';
import { scanFilesFeature } from './scans/files.js';
import { scansFeature } from './scans/routes.js';
import { usersFeature } from './users/routes.js';
import { webhooksFeature } from './webhooks/routes.js';
import { defaultWebRoot, isPageRequest, registerWebApp } from './web/plugin.js';

/** Always mounted: sign-in, users, patients and the audit trail. */
const CORE_FEATURES: Feature[] = [authFeature, usersFeature, patientsFeature, auditFeature];

/** The other features, one list so the server and the tests build the same application. */
export const FEATURES: Feature[] = [googleSignInFeature, scansFeature, scanFilesFeature, analysisFeature, webhooksFeature];

interface RouteEntry {
  method: string;
  url: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route of the application (HEAD twins of GET routes left out). */
    routeTable: RouteEntry[];
  }
}

export interface BuildOptions {
  /** A pino instance or false; defaults to pino at the configured level. */
  logger?: FastifyBaseLogger | false;
  /** Feature plugins after the core ones; defaults to FEATURES (scans, ml, webhooks...). */
  features?: Feature[];
  /** Folder of the built web app; defaults to web/dist when built; null serves none. */
  webRoot?: string | null;
  /**
   * Compile the checks behind every response schema's unions (each Nullable field) as the
   * routes are set up, not on the first answer that reaches each one: a fresh process's first
   * list or scan detail paid 120-210 ms of CPU for them. The server sets it (0.6-1.0 s more CPU
   * before its port opens, docs/benchmarks/README.md); tests, which build many apps, need not.
   */
  compileSerializersAhead?: boolean;
}

/**
 * Once the server is closing (SIGTERM), a request still arriving on a kept-alive connection is
 * answered 503 with Retry-After at once, before any work: the load balancer or client sends it
 * again, to another process or to this one restarted. Fastify adds `Connection: close`.
 */
function refuseWhileClosing(app: FastifyInstance): void {
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onRequest', async (_request, reply) => {
    if (!closing) return;
    return reply
      .code(503)
      .header('retry-after', String(RETRY_AFTER_SECONDS.busy))
      .send({ error: 'The server is shutting down: send the request again' });
  });
}

/**
 * A request that met the database out of reach (PostgreSQL restarting, refusing connections,
 * or cutting them) is an outage, not a bug: 503 with Retry-After rather than 500, logged at
 * warn by kind and code, without the statement. Uploads find out first whether their write
 * committed (src/scans/service.ts); other changes are answered "may or may not have been saved".
 */
function answerDatabaseUnreachable(err: Error, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  request.log.warn({ database: scrubError(err, { query: false }) }, 'the database is not reachable: answered 503');
  const outage = databaseUnreachable(request.method);
  return reply
    .code(outage.status)
    .header('retry-after', String(outage.retryAfterSeconds))
    .send({ error: outage.message });
}

export async function buildApp(ctx: AppContext, opts: BuildOptions = {}): Promise<FastifyInstance> {
  const { config } = ctx;
  const app = Fastify({
    ...(opts.logger === undefined ? { logger: loggerOptions(config.logLevel) } : {}),
    ...(opts.logger ? { loggerInstance: opts.logger } : {}),
    // Each request's logger (its id bound) is made when it first logs, not for every request.
    childLoggerFactory: requestLoggerFactory,
    trustProxy: config.trustProxy,
    bodyLimit: 1024 * 1024,
    serializerOpts: {
      // fast-json-stringify picks a union's branch with Ajv. Ajv's optimisation passes were over
      // half the cost of compiling those checks and changed nothing measured in serialising
      // (a scan detail and a list page, 100,000 times each).
      ajv: { code: { optimize: false } },
      compileValidators: opts.compileSerializersAhead ?? false,
    },
    // Requests that arrive while the server closes are refused by the hook below, in the API's
    // error shape and with Retry-After, rather than by Fastify's own 503.
    return503OnClosing: false,
    // Errors the router raises before any route or error handler runs (a badly encoded or
    // over-long path segment) get the API's error shape too.
    frameworkErrors: (err, _request, reply: FastifyReply) => {
      const { status, message } = frameworkErrorMessage(err);
      void reply.code(status).send({ error: message });
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.setValidatorCompiler(createValidatorCompiler());
  parseJsonAllowingEmpty(app);

  app.decorateRequest('user', null);
  // Every route as it is added, so tests (the access matrix) can check each one has a row.
  const routeTable: RouteEntry[] = [];
  app.decorate('routeTable', routeTable);
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) if (method !== 'HEAD') routeTable.push({ method, url: route.url });
  });
  // Every route, schema or not: NUL and other control characters are a 400, never a 500.
  app.addHook('preValidation', rejectControlCharacters);

  app.setErrorHandler((err: FastifyError | AppError, request, reply) => {
    if (err instanceof AppError) {
      if (err.status >= 500) request.log.error({ err }, 'request failed');
      if (err.retryAfterSeconds !== undefined) reply.header('retry-after', String(err.retryAfterSeconds));
      return reply.code(err.status).send({ ...err.fields, error: err.message });
    }
    if (err.validation) {
      return reply.code(400).send({ error: validationMessage(err) });
    }
    if (isDatabaseUnreachable(err)) return answerDatabaseUnreachable(err, request, reply);
    const status = err.statusCode ?? 500;
    if (status >= 500) {
      // Never leak internals: log the error, answer a generic message.
      request.log.error({ err }, 'unhandled error');
      return reply.code(500).send({ error: 'Internal server error: the problem has been logged' });
    }
    return reply.code(status).send({ error: clientErrorMessage(err, request.headers['content-type']) });
  });

  // Browser apps on the configured origins only (CORS_ORIGINS, default CLIENT_URL); registered
  // first so that refusals (401, 429) carry the headers too and the browser can read them.
  await app.register(cors, {
    origin: config.corsOrigins,
    credentials: true,
    methods: ['GET', 'POST', 'PATCH', 'DELETE'],
    // If-Match and ETag: a review saved over a finding that changed since it was loaded is refused (412).
    allowedHeaders: ['Authorization', 'Content-Type', 'If-Match'],
    exposedHeaders: ['X-RateLimit-Limit', 'X-RateLimit-Remaining', 'X-RateLimit-Reset', 'Retry-After', 'Content-Disposition', 'ETag'],
    maxAge: 600,
  });
  refuseWhileClosing(app);
  await registerSecurityHeaders(app);
  registerAuditHooks(app, ctx);

  const { redis } = ctx;
  // One root-level hook rather than the plugin's per-route hooks: route hooks run after the
  // feature plugins' own onRequest hooks (authentication), so a 401 would carry no rate-limit
  // headers and failed logins or token probes would not count. Routes opt out with
  // `config: { rateLimit: false }` (health checks, signed image links).
  await app.register(rateLimit, {
    global: false,
    // Per address for anonymous callers and sign-in; per user, with more room, once signed in.
    keyGenerator: rateLimitKey(ctx.tokens),
    max: rateLimitMax(config.rateLimit),
    timeWindow: config.rateLimit.windowMs,
    ...(redis ? { redis, nameSpace: `${config.redisKeyPrefix}rate-limit:` } : {}),
    // A Redis outage must not take the API down: let requests through and log it.
    skipOnError: true,
    addHeadersOnExceeding: { 'x-ratelimit-limit': true, 'x-ratelimit-remaining': true, 'x-ratelimit-reset': true },
    addHeaders: {
      'x-ratelimit-limit': true,
      'x-ratelimit-remaining': true,
      'x-ratelimit-reset': true,
      'retry-after': true,
    },
    errorResponseBuilder: (_req, context) =>
      new AppError(
        'rate_limited',
        `Too many requests: the limit is ${context.max} per ${windowInWords(config.rateLimit.windowMs)}; try again in ${waitInWords(context.ttl / 1000)}`,
      ),
  });

  const limitRequest = app.rateLimit();
  const webRoot = opts.webRoot === undefined ? defaultWebRoot() : opts.webRoot;
  app.addHook('onRequest', async (request, reply) => {
    if ((request.routeOptions.config as { rateLimit?: unknown } | undefined)?.rateLimit === false) return;
    // A page of the web app is index.html whatever the path: not an API call.
    if (webRoot && isPageRequest(request)) return;
    await limitRequest.call(app, request, reply);
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'ImageMedix API',
        version: '1.0.0',
        description:
          'Medical image analysis server: patients, scans (JPEG, PNG, DICOM), brain MRI tumour and chest X-ray pneumonia models, reviews, reports and webhooks. Research use, not a medical device.',
      },
      components: {
        securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' } },
      },
    },
  });
  await registerApiDocs(app, ctx);

  if (config.metrics.token) {
    recordRequestLatency(app, ctx.metrics);
    registerMetricsRoute(app, ctx.metrics, config.metrics.token);
  }
  evictUsersOnWrites(app, ctx.userCache);
  await app.register(healthRoutes(ctx.database));
  for (const feature of [...CORE_FEATURES, ...(opts.features ?? FEATURES)]) {
    await app.register(feature.routes(ctx), { prefix: feature.prefix });
  }

  const web = webRoot ? await registerWebApp(app, webRoot) : null;
  app.setNotFoundHandler(
    async (request, reply) =>
      web?.fallback(request, reply) ??
      reply.code(404).send({ error: `Route ${request.method} ${request.url.split('?')[0]} not found` }),
  );
  return app;
}

/**
 * The rate-limit window in words ("minute", "15 minutes"), from the setting itself: the
 * plugin's `context.after` is the time left in the window, not the window.
 */
function windowInWords(ms: number): string {
  for (const [unit, size] of [['hour', 3_600_000], ['minute', 60_000], ['second', 1000]] as const) {
    if (ms % size === 0) {
      const n = ms / size;
      return n === 1 ? unit : `${n} ${unit}s`;
    }
  }
  return `${ms} ms`;
}
