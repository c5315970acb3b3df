/** Google sign-in (OpenID Connect) as a feature of the API, mounted at /api/auth/google. */
import type { Feature } from '../../context.js';
import { findUserById } from '../../users/repository.js';
import { googleAuthPlugin } from './plugin.js';
import { createGoogleUserStore } from './store.js';

export const googleSignInFeature: Feature = {
  prefix: '/api/auth/google',
  routes: (ctx) => async (app) => {
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
    );
  },
};
