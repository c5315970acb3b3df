/**
 * Authentication and role checks as Fastify hooks. Every request re-reads its user, so a
 * deactivated account or a changed role takes effect at once, even for tokens already issued.
 */
import type { FastifyReply, FastifyRequest, onRequestHookHandler, preHandlerHookHandler } from 'fastify';
import type { Db } from '../platform/db/index.js';
import { AppError } from '../platform/errors.js';
import { findUserById } from '../users/repository.js';
import type { Role } from '../users/service.js';
import type { TokenService } from './tokens.js';

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

export function createAuthHook(db: Db, tokens: TokenService): onRequestHookHandler {
  return async function authenticate(request: FastifyRequest, _reply: FastifyReply) {
    const token = bearerToken(request);
    if (!token) throw new AppError('unauthorized', 'Authentication required: send "Authorization: Bearer <token>"');
    const userId = await tokens.verify(token);
    if (!userId) throw new AppError('unauthorized', 'Invalid or expired token: log in again');
    const user = await findUserById(db, userId);
    if (!user) throw new AppError('unauthorized', 'Invalid or expired token: log in again');
    if (!user.isActive) throw new AppError('unauthorized', 'This account is deactivated');
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

export const requireAdmin: preHandlerHookHandler = async function requireAdmin(request) {
  if (request.user?.role !== 'admin') throw new AppError('forbidden', 'Only administrators can do this');
};

/** The authenticated user of a route behind the auth hook. */
export function currentUser(request: FastifyRequest): AuthUser {
  if (!request.user) throw new AppError('unauthorized', 'Authentication required');
  return request.user;
}
