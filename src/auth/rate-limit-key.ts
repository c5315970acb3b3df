/**
 * Whose budget a request spends under the global rate limit. The API document's limit (100
 * requests per 15 minutes per IP) stays for anonymous callers and for signing in; a request
 * with a valid token spends its user's own, larger budget (RATE_LIMIT_USER_MAX), because one
 * clinician in the web app (worklist, images, live status, reviews) makes hundreds of requests
 * a session, and several clinicians behind one hospital NAT share an address.
 *
 * The token's signature and expiry are checked here (no database read): a forged or expired
 * token is anonymous. A revoked token still counts against its user until it expires, and the
 * authentication hook refuses it anyway.
 */
import type { FastifyRequest } from 'fastify';
import { bearerToken } from './hooks.js';
import type { TokenService } from './tokens.js';

const USER_PREFIX = 'user:';

/** Sign-in routes are keyed by address whatever token comes along: passwords are guessed there. */
const SIGN_IN = /^\/api\/auth\/(login|google)(\/|$)/;

export function rateLimitKey(tokens: Pick<TokenService, 'verify'>): (request: FastifyRequest) => Promise<string> {
  return async (request) => {
    const token = bearerToken(request);
    if (token && !SIGN_IN.test(request.url.split('?')[0] ?? '')) {
      const claims = await tokens.verify(token);
      if (claims) return `${USER_PREFIX}${claims.userId}`;
    }
    return `ip:${request.ip}`;
  };
}

/** The allowance of a key: a signed-in user's, or an address's. */
export function rateLimitMax(limits: { max: number; userMax: number }): (request: FastifyRequest, key: string) => number {
  return (_request, key) => (key.startsWith(USER_PREFIX) ? limits.userMax : limits.max);
}
