/**
 * Authentication and role checks as Fastify hooks. A request's user comes from the database
 * (through a per-process cache that every change to the user's row evicts, see user-cache.ts),
 * so a deactivated account or a changed role takes effect at once, and a token whose version is
 * behind the user's (password change, role change, deactivation, logout) is refused.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest, onRequestHookHandler, preHandlerHookHandler } from 'fastify';
import type { Db } from '../platform/db/index.js';
import { AppError } from '../platform/errors.js';
import { findUserById } from '../users/repository.js';
import type { Role } from '../users/service.js';
import type { TokenService } from './tokens.js';
import type { UserCache } from './user-cache.js';

export interface AuthUser {
  id: string;
  name: string;
  email: string;
  role: Role;
  specialization: string | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    user: AuthUser | null;
  }
}

export function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (!header) return null;
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  return match?.[1] ?? null;
}

/** What the user cache holds: the user's row as the auth hook reads it. */
export type CachedUser = NonNullable<Awaited<ReturnType<typeof findUserById>>>;

export function createAuthHook(db: Db, tokens: TokenService, cache?: UserCache<CachedUser>): onRequestHookHandler {
  return async function authenticate(request: FastifyRequest, _reply: FastifyReply) {
    const token = bearerToken(request);
    if (!token) throw new AppError('unauthorized', 'Authentication required: send "Authorization: Bearer <token>"');
    const claims = await tokens.verify(token);
    if (!claims) throw new AppError('unauthorized', 'Invalid or expired token: log in again');
    const userId = claims.userId;
    const user = cache ? await cache.get(userId, () => findUserById(db, userId)) : await findUserById(db, userId);
    if (!user) throw new AppError('unauthorized', 'Invalid or expired token: log in again');
    if (!user.isActive) throw new AppError('unauthorized', 'This account is deactivated');
    // A password change, role change, deactivation or logout since the token was issued.
    if (user.tokenVersion !== claims.tokenVersion) throw new AppError('unauthorized', 'This session has ended: log in again');
    request.user = {
      id: user.id,
      name: user.name,
      email: user.email,
      role: user.role,
      specialization: user.specialization,
    };
    request.log = request.log.child({ userId: user.id });
  };
}

/**
 * A request of this process that may have changed a user (an admin's edit, a password change,
 * a logout) empties the cache before its response leaves: the NOTIFY that evicts the user
 * everywhere arrives on another connection, a moment after the commit, and this process's
 * next request (the client's following call) must not be answered from the old row meanwhile.
 */
export function evictUsersOnWrites(app: FastifyInstance, cache: UserCache<CachedUser>): void {
  app.addHook('onSend', async (request, _reply, payload) => {
    if (request.method !== 'GET' && request.method !== 'HEAD' && /^\/api\/(users|auth)(\/|$|\?)/.test(request.url)) cache.clear();
    return payload;
  });
}

export const requireAdmin: preHandlerHookHandler = async function requireAdmin(request) {
  if (request.user?.role !== 'admin') throw new AppError('forbidden', 'Only administrators can do this');
};

/** The authenticated user of a route behind the auth hook. */
export function currentUser(request: FastifyRequest): AuthUser {
  if (!request.user) throw new AppError('unauthorized', 'Authentication required');
  return request.user;
}
