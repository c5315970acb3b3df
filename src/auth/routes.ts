import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AppContext, Feature } from '../context.js';
import { ErrorSchema, MessageSchema } from '../platform/http/schemas.js';
import { endSessions } from '../users/service.js';
import { signIn } from './sign-in.js';
import { currentUser } from './hooks.js';
import { LoginBodySchema, LoginResponseSchema, MeSchema } from './schemas.js';

export function authRoutes(ctx: AppContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post(
      '/login',
      {
        config: { audit: { action: 'auth.login', resource: 'session' } },
        schema: {
          tags: ['Authentication'],
          summary: 'Log in with email and password',
          body: LoginBodySchema,
          response: { 200: LoginResponseSchema, 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 429: ErrorSchema },
        },
      },
      async (request) => {
        const user = await signIn(ctx, { email: request.body.email, password: request.body.password, ip: request.ip });
        const token = await ctx.tokens.issue(user);
        request.log.info({ userId: user.id }, 'login');
        return { user: { _id: user.id, name: user.name, email: user.email, role: user.role }, token };
      },
    );

    app.post(
      '/logout',
      {
        config: { audit: { action: 'auth.logout', resource: 'session' } },
        onRequest: ctx.authenticate,
        schema: {
          tags: ['Authentication'],
          summary: "Log out: ends every session of the signed-in user (all of the user's tokens stop working)",
          security: [{ bearerAuth: [] }],
          response: { 200: MessageSchema, 401: ErrorSchema, 429: ErrorSchema },
        },
      },
      async (request) => {
        await endSessions(ctx.db, currentUser(request).id);
        return { message: 'Logged out: every token of this account has stopped working' };
      },
    );

    app.get(
      '/me',
      {
        onRequest: ctx.authenticate,
        schema: {
          tags: ['Authentication'],
          summary: 'The signed-in user',
          security: [{ bearerAuth: [] }],
          response: { 200: MeSchema, 401: ErrorSchema, 429: ErrorSchema },
        },
      },
      async (request) => {
        const u = currentUser(request);
        return { _id: u.id, name: u.name, email: u.email, role: u.role, specialization: u.specialization };
      },
    );
  };
}

/** Sign-in, sign-out and the signed-in user. */
export const authFeature: Feature = { prefix: '/api/auth', routes: authRoutes };
