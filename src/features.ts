/**
 * Feature plugins beyond the core ones registered in app.ts (health, auth, users, patients).
 * One list, so the server and the tests build the same application.
 */
import type { FastifyInstance } from 'fastify';
import { mlRoutes } from './analysis/routes.js';
import { googleAuthPlugin } from './auth/google/plugin.js';
import { createGoogleUserStore } from './auth/google/store.js';
import type { AppContext } from './context.js';
import { scansFeature } from './scans/routes.js';
import { findUserById } from './users/repository.js';
import { webhookRoutes } from './webhooks/routes.js';

export type Feature = (app: FastifyInstance, ctx: AppContext) => Promise<void>;

export const FEATURES: Feature[] = [
  async (app, ctx) => {
    await app.register(
      googleAuthPlugin({
        config: ctx.config.google,
        users: createGoogleUserStore(ctx.db),
        issueToken: async (user) => {
          const row = await findUserById(ctx.db, user.id);
          if (!row) throw new Error('the signed-in user vanished');
          return ctx.tokens.issue(row);
        },
        stateSecret: ctx.config.jwtSecret,
      }),
      { prefix: '/api/auth/google' },
    );
  },
  scansFeature,
  async (app, ctx) => {
    await app.register(mlRoutes(ctx), { prefix: '/api/ml' });
  },
  async (app, ctx) => {
    await app.register(webhookRoutes(ctx), { prefix: '/api/webhooks' });
  },
];
