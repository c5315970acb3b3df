import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AppContext } from '../context.js';
import { ErrorSchema } from '../platform/http/schemas.js';
import { authenticate } from '../users/service.js';
import { currentUser } from './hooks.js';
import { LoginBodySchema, LoginResponseSchema, MeSchema } from './schemas.js';

export function authRoutes(ctx: AppContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post(
      '/login',
      {
        schema: {
          tags: ['Authentication'],
          summary: 'Log in with email and password',
          body: LoginBodySchema,
          response: { 200: LoginResponseSchema, 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 429: ErrorSchema },
        },
      },
      async (request) => {
        const user = await authenticate(ctx.db, request.body.email, request.body.password);
        const token = await ctx.tokens.issue(user.id);
        request.log.info({ userId: user.id }, 'login');
        return { user: { _id: user.id, name: user.name, email: user.email, role: user.role }, token };
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
