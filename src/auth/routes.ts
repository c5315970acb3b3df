import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { AppContext, Feature } from '../context.js';
import { ErrorSchema, MessageSchema } from '../platform/http/schemas.js';
import { noteAudit } from '../audit/log.js';
import { changeOwnPassword, endSessions } from '../users/service.js';
import { signIn } from './sign-in.js';
import { currentUser } from './hooks.js';
import { ChangePasswordBodySchema, ChangePasswordResponseSchema, LoginBodySchema, LoginResponseSchema, MeSchema } from './schemas.js';

function authRoutes(ctx: AppContext): FastifyPluginAsyncTypebox {
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

    app.post(
      '/password',
      {
        config: { audit: { action: 'user.password_change', resource: 'user' } },
        onRequest: ctx.authenticate,
        schema: {
          tags: ['Authentication'],
          summary: 'Change your own password: the current one is required; every other session ends',
          description:
            'Wrong current passwords count as failed sign-ins (the same throttle and lockout: 429 with Retry-After). The new password is checked for strength (400 says why). Every token issued before stops working, on every device; the answer carries a new token for this one.',
          security: [{ bearerAuth: [] }],
          body: ChangePasswordBodySchema,
          response: { 200: ChangePasswordResponseSchema, 400: ErrorSchema, 401: ErrorSchema, 403: ErrorSchema, 429: ErrorSchema },
        },
      },
      async (request) => {
        const me = currentUser(request);
        // Which field changed, never what to (and the current password is not a field).
        noteAudit(request, { resourceId: me.id, detail: { fields: ['password (changed)'] } });
        const user = await changeOwnPassword(ctx, {
          userId: me.id,
          currentPassword: request.body.currentPassword,
          newPassword: request.body.newPassword,
          ip: request.ip,
        });
        request.log.info('password changed');
        return { message: 'Password changed: every other session has ended', token: await ctx.tokens.issue(user) };
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
