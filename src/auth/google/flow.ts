// The two halves of a Google sign-in, as the routes see them: start (where to send the
// browser, with which cookie) and finish (from the provider's redirect to an ImageMedix token).
import type { EnabledGoogleConfig } from './config.js';
import { GoogleSignInError } from './errors.js';
import { createFlowCookie } from './flow-cookie.js';
import { createGoogleOidcClient } from './oidc.js';
import { signInWithGoogle, type GoogleSignInOutcome, type GoogleUser, type GoogleUserStore } from './service.js';

export interface GoogleSignInFlow {
  start(): Promise<{ providerUrl: string; setCookie: string }>;
  finish(callback: { query: string; cookieHeader: string | undefined }): Promise<{ user: GoogleUser; outcome: GoogleSignInOutcome; token: string }>;
  /** The Set-Cookie value that spends the sign-in cookie; sent with every callback answer. */
  readonly clearCookie: string;
}

export function createGoogleSignInFlow(opts: {
  config: EnabledGoogleConfig;
  users: GoogleUserStore;
  issueToken: (user: GoogleUser) => Promise<string>;
  stateSecret: Uint8Array;
}): GoogleSignInFlow {
  const { config, users, issueToken } = opts;
  const oidc = createGoogleOidcClient(config);
  const cookie = createFlowCookie({ secret: opts.stateSecret, callbackUrl: config.callbackUrl });

  return {
    async start() {
      const { authorizationUrl, flow } = await oidc.beginSignIn();
      return { providerUrl: authorizationUrl.href, setCookie: await cookie.seal(flow) };
    },

    async finish(callback) {
      const flow = await cookie.open(callback.cookieHeader);
      if (!flow) throw new GoogleSignInError('invalid_state', 'sign-in cookie missing, expired or undecryptable');
      const identity = await oidc.completeSignIn(callback.query, flow);
      const { user, outcome } = await signInWithGoogle({
        identity,
        users,
        autoProvision: config.autoProvision,
        allowedDomains: config.allowedDomains,
      });
      return { user, outcome, token: await issueToken(user) };
    },

    clearCookie: cookie.clear,
  };
}
