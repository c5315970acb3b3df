// GET /api/auth/google          -> 302 to the provider (or back to CLIENT_URL with an error)
// GET /api/auth/google/callback -> 302 to CLIENT_URL#token=<jwt> or CLIENT_URL#error=<code>&error_description=<text>
// Both answer 404 {"error"} while GOOGLE_CLIENT_ID is not set.
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyBaseLogger, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';

import { noteAudit } from '../../audit/log.js';
import type { AuditOutcome } from '../../platform/db/schema.js';
import { checkGoogleConfig, type GoogleConfig } from './config.js';
import { GOOGLE_SIGN_IN_ERROR_DESCRIPTIONS, GoogleSignInError, type GoogleSignInErrorCode } from './errors.js';
import { createGoogleSignInFlow } from './flow.js';
import { GoogleCallbackQuerySchema, GoogleErrorResponseSchema, RedirectResponseSchema } from './schemas.js';
import type { GoogleUser, GoogleUserStore } from './service.js';

export type { GoogleConfig } from './config.js';
export type { GoogleUser, GoogleUserStore } from './service.js';

export interface GoogleAuthPluginOptions {
  config: GoogleConfig;
  users: GoogleUserStore;
  /** Issues the ImageMedix access token for a signed-in user. */
  issueToken: (user: GoogleUser) => Promise<string>;
  /** At least 32 bytes; encrypts the short-lived sign-in cookie (a key is derived from it). */
  stateSecret: Uint8Array;
}

export const GOOGLE_NOT_CONFIGURED = 'Google sign-in is not configured on this server';

export function googleAuthPlugin(opts: GoogleAuthPluginOptions): FastifyPluginAsync {
  const { config } = opts;
  // Fails at start-up, not at the first sign-in, when a setting is missing or malformed.
  const signIn = checkGoogleConfig(config) ? createGoogleSignInFlow({ ...opts, config }) : undefined;

  return async (fastify) => {
    const app = fastify.withTypeProvider<TypeBoxTypeProvider>();

    app.get(
      '/',
      {
        exposeHeadRoute: false,
        schema: {
          summary: 'Start Google sign-in',
          tags: ['auth'],
          response: { 302: RedirectResponseSchema, 404: GoogleErrorResponseSchema },
        },
      },
      async (request, reply) => {
        if (!signIn) return reply.code(404).send({ error: GOOGLE_NOT_CONFIGURED });
        noStore(reply);
        try {
          const { providerUrl, setCookie } = await signIn.start();
          request.log.info('google sign-in started');
          return reply.header('set-cookie', setCookie).redirect(providerUrl, 302);
        } catch (err) {
          return redirectWithError(request, reply, err);
        }
      },
    );

    // The sign-in page asks whether to offer the button (no flow is started, nothing is set).
    app.get(
      '/enabled',
      {
        schema: {
          summary: 'Whether Google sign-in is configured on this server',
          tags: ['auth'],
          response: { 200: Type.Object({ enabled: Type.Boolean() }) },
        },
      },
      async () => ({ enabled: signIn !== undefined }),
    );

    app.get(
      '/callback',
      {
        // A HEAD request (a link prefetcher) must not spend the code and the sign-in cookie.
        exposeHeadRoute: false,
        attachValidation: true,
        // Recorded like a password sign-in (auth.login), success or refusal; the redirect's
        // status says nothing, so the outcome comes from the handler (noteAudit).
        config: { audit: { action: 'auth.login', resource: 'session' } },
        // The query holds the authorization code: keep it out of the request log lines.
        logSerializers: { req: serializeRequestWithoutQuery },
        schema: {
          summary: 'Google sign-in redirect URI',
          tags: ['auth'],
          querystring: GoogleCallbackQuerySchema,
          response: { 302: RedirectResponseSchema, 404: GoogleErrorResponseSchema },
        },
      },
      async (request, reply) => {
        if (!signIn) return reply.code(404).send({ error: GOOGLE_NOT_CONFIGURED });
        noStore(reply);
        // One attempt per sign-in: the cookie is spent whatever happens next.
        reply.header('set-cookie', signIn.clearCookie);
        try {
          if (request.validationError) throw new GoogleSignInError('invalid_request', 'callback query failed validation');
          const { user, outcome, token } = await signIn.finish({ query: rawQuery(request.url), cookieHeader: request.headers.cookie });
          request.log.info({ userId: user.id, outcome }, 'google sign-in succeeded');
          noteAudit(request, {
            actor: { id: user.id, role: user.role },
            resourceId: user.id,
            outcome: 'success',
            detail: { method: 'google', account: outcome },
          });
          return reply.redirect(clientRedirect(config.clientUrl, { token }), 302);
        } catch (err) {
          return redirectWithError(request, reply, err);
        }
      },
    );
  };

  function redirectWithError(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
    const error = err instanceof GoogleSignInError ? err : undefined;
    const code: GoogleSignInErrorCode = error?.code ?? 'server_error';
    logFailure(request.log, code, err);
    // A refused Google sign-in names the account it concerned, when there is one (like a
    // failed password sign-in), and why; never the email or anything Google sent.
    noteAudit(request, {
      ...(error?.userId ? { resourceId: error.userId } : {}),
      outcome: AUDIT_OUTCOME[code],
      detail: { method: 'google', reason: code },
    });
    return reply.redirect(
      clientRedirect(config.clientUrl, { error: code, error_description: GOOGLE_SIGN_IN_ERROR_DESCRIPTIONS[code] }),
      302,
    );
  }
}

/** How each refusal reads in the audit trail, in the outcomes a password sign-in has. */
const AUDIT_OUTCOME: Record<GoogleSignInErrorCode, AuditOutcome> = {
  access_denied: 'denied',
  email_not_verified: 'denied',
  domain_not_allowed: 'denied',
  account_not_found: 'denied',
  account_pending_activation: 'denied',
  account_inactive: 'denied',
  account_conflict: 'denied',
  invalid_request: 'invalid',
  invalid_state: 'invalid',
  invalid_grant: 'invalid',
  invalid_response: 'invalid',
  provider_error: 'error',
  provider_unavailable: 'error',
  server_error: 'error',
};

function logFailure(log: FastifyBaseLogger, code: GoogleSignInErrorCode, err: unknown): void {
  if (err instanceof GoogleSignInError) {
    const fields = { googleSignInError: code, detail: err.detail, userId: err.userId };
    if (code === 'server_error' || code === 'provider_unavailable') log.error(fields, 'google sign-in failed');
    else log.warn(fields, 'google sign-in failed');
    return;
  }
  // Errors from the user store or token issuer. Their messages can quote the query and its
  // parameters (Drizzle's do: an email), so only their kind, code and stack frames are logged.
  log.error({ googleSignInError: code, err }, 'google sign-in failed');
}

/** CLIENT_URL with the result in the fragment, which browsers never send to a server. */
function clientRedirect(clientUrl: string, result: Record<string, string>): string {
  const url = new URL(clientUrl);
  url.hash = new URLSearchParams(result).toString();
  return url.href;
}

function noStore(reply: FastifyReply): void {
  reply.header('cache-control', 'no-store').header('referrer-policy', 'no-referrer');
}

function rawQuery(url: string): string {
  const start = url.indexOf('?');
  return start === -1 ? '' : url.slice(start);
}

function serializeRequestWithoutQuery(request: FastifyRequest): Record<string, unknown> {
  const url = request.url;
  const queryStart = url.indexOf('?');
  return {
    method: request.method,
    url: queryStart === -1 ? url : `${url.slice(0, queryStart)}?[redacted]`,
    host: request.host,
    remoteAddress: request.ip,
  };
}
