import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { currentUser, requireAdmin } from '../auth/hooks.js';
import type { AppContext } from '../context.js';
import { notFound } from '../platform/errors.js';
import { authErrors, ErrorSchema, IdParamsSchema, isUuid } from '../platform/http/schemas.js';
import { CreateUserBodySchema, UpdateUserBodySchema, UserSchema } from './schemas.js';
import { createUser, listUsers, toPublicUser, updateUser } from './service.js';

/** User management, admin only (mounted at /api/users, so paths read /api/users/users). */
export function userRoutes(ctx: AppContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.addHook('onRequest', ctx.authenticate);
    app.addHook('preHandler', requireAdmin);
    const security = [{ bearerAuth: [] }];

    app.get(
      '/users',
      { schema: { tags: ['Users'], summary: 'List users (admin)', security, response: { 200: Type.Array(UserSchema), ...authErrors } } },
      async () => (await listUsers(ctx.db)).map(toPublicUser),
    );

    app.post(
      '/users',
      {
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
  };
}
