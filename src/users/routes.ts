import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { noteAudit } from '../audit/log.js';
import { currentUser, requireAdmin } from '../auth/hooks.js';
import { canonicalAddress, isIpAddress } from '../auth/throttle.js';
import type { AppContext, Feature } from '../context.js';
import { AppError, badRequest, notFound } from '../platform/errors.js';
import { authErrors, ErrorSchema, IdParamsSchema, MessageSchema } from '../platform/http/schemas.js';
import { isUuid } from '../platform/ids.js';
import { AddressLockSchema, AddressParamsSchema, CreateUserBodySchema, UpdateUserBodySchema, UserSchema } from './schemas.js';
import { createUser, findUser, listUsers, toPublicUser, updateUser } from './service.js';

/** User management, admin only (mounted at /api/users, so paths read /api/users/users). */
function userRoutes(ctx: AppContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.addHook('onRequest', ctx.authenticate);
    app.addHook('preHandler', requireAdmin);
    const security = [{ bearerAuth: [] }];

    app.get(
      '/users',
      {
        config: { audit: { action: 'user.list', resource: 'user' } },
        schema: { tags: ['Users'], summary: 'List users (admin)', security, response: { 200: Type.Array(UserSchema), ...authErrors } },
      },
      async () => (await listUsers(ctx.db)).map(toPublicUser),
    );

    app.post(
      '/users',
      {
        config: { audit: { action: 'user.create', resource: 'user' } },
        schema: {
          tags: ['Users'],
          summary: 'Create a user (admin)',
          security,
          body: CreateUserBodySchema,
          response: { 201: UserSchema, ...authErrors, 409: ErrorSchema },
        },
      },
      async (request, reply) => {
        const user = await createUser(ctx.db, { ...request.body, role: request.body.role ?? 'doctor' });
        request.log.info({ createdUserId: user.id }, 'user created');
        return reply.code(201).send(toPublicUser(user));
      },
    );

    app.patch(
      '/users/:id',
      {
        config: { audit: { action: 'user.update', resource: 'user' } },
        schema: {
          tags: ['Users'],
          summary: 'Change a user: role, active flag, specialization, name, password (admin)',
          security,
          params: IdParamsSchema,
          body: UpdateUserBodySchema,
          response: { 200: UserSchema, ...authErrors, 409: ErrorSchema },
        },
      },
      async (request) => {
        if (!isUuid(request.params.id)) throw notFound('User');
        const user = await updateUser(ctx.db, {
          actorId: currentUser(request).id,
          userId: request.params.id,
          changes: request.body,
        });
        request.log.info({ updatedUserId: user.id, fields: Object.keys(request.body) }, 'user updated');
        return toPublicUser(user);
      },
    );

    app.post(
      '/users/:id/unlock',
      {
        config: { audit: { action: 'user.unlock', resource: 'user' } },
        schema: {
          tags: ['Users'],
          summary: 'Unlock an account locked after failed sign-ins (admin)',
          security,
          params: IdParamsSchema,
          response: { 200: MessageSchema, ...authErrors },
        },
      },
      async (request) => {
        const user = isUuid(request.params.id) ? await findUser(ctx.db, request.params.id) : null;
        if (!user) throw notFound('User');
        await ctx.loginThrottle.unlock(user.email);
        request.log.info({ unlockedUserId: user.id }, 'account unlocked');
        return { message: 'Account unlocked: the user can sign in again' };
      },
    );

    app.get(
      '/ip-locks',
      {
        config: { audit: { action: 'address.list_locks', resource: 'address' } },
        schema: {
          tags: ['Users'],
          summary: 'Client addresses locked now after too many failed sign-ins, longest lock first (admin)',
          security,
          response: { 200: Type.Array(AddressLockSchema), ...authErrors },
        },
      },
      async () =>
        (await ctx.loginThrottle.lockedAddresses()).map((l) => ({
          ip: l.ip,
          failures: l.failures,
          windowStartedAt: l.windowStartedAt.toISOString(),
          lockedUntil: l.lockedUntil.toISOString(),
        })),
    );

    app.post(
      '/ip-locks/:ip/unlock',
      {
        config: { audit: { action: 'address.unlock', resource: 'address' } },
        schema: {
          tags: ['Users'],
          summary: "Lift a client address's sign-in lock and forget its failures (admin)",
          security,
          params: AddressParamsSchema,
          response: { 200: MessageSchema, ...authErrors },
        },
      },
      async (request) => {
        if (!isIpAddress(request.params.ip)) throw badRequest('ip must be an IPv4 or IPv6 address');
        const ip = canonicalAddress(request.params.ip);
        noteAudit(request, { resourceId: ip });
        if (!(await ctx.loginThrottle.unlockAddress(ip))) {
          throw new AppError('not_found', `No sign-in lock is held on ${ip}: there is nothing to lift (GET /api/users/ip-locks lists the locked addresses)`);
        }
        request.log.info('address unlocked');
        return { message: `Address ${ip} unlocked: sign-ins from it are accepted again` };
      },
    );
  };
}

/** User accounts. */
export const usersFeature: Feature = { prefix: '/api/users', routes: userRoutes };
