// The OpenID Connect side of Google sign-in, all of it done by openid-client: discovery,
// the authorization request (PKCE S256, state, nonce), and the code exchange with the
// ID token checks (signature against the provider's JWKS, issuer, audience, expiry, nonce).
import { timingSafeEqual } from 'node:crypto';

import * as client from 'openid-client';

import type { EnabledGoogleConfig } from './config.js';
import { GoogleSignInError } from './errors.js';
import type { SignInFlow } from './flow-cookie.js';
import type { GoogleIdentity } from './service.js';

const SCOPE = 'openid email profile';
const PROVIDER_TIMEOUT_SECONDS = 10;

export interface GoogleOidcClient {
  beginSignIn(): Promise<{ authorizationUrl: URL; flow: SignInFlow }>;
  /** `query` is the raw query string the provider redirected the browser back with. */
  completeSignIn(query: string, flow: SignInFlow): Promise<GoogleIdentity>;
}

export function createGoogleOidcClient(config: EnabledGoogleConfig): GoogleOidcClient {
  let discovered: Promise<client.Configuration> | undefined;

  // Discovered once, on first use; a failure is not cached, so the next request retries.
  function configuration(): Promise<client.Configuration> {
    discovered ??= client
      .discovery(new URL(config.issuer), config.clientId, config.clientSecret, client.ClientSecretPost(config.clientSecret), {
        timeout: PROVIDER_TIMEOUT_SECONDS,
        execute: [
          client.enableNonRepudiationChecks,
          ...(config.allowInsecureIssuer === true ? [client.allowInsecureRequests] : []),
        ],
      })
      .catch((err: unknown) => {
        discovered = undefined;
        throw new GoogleSignInError('provider_unavailable', `discovery failed: ${describeLibraryError(err)}`);
      });
    return discovered;
  }

  return {
    async beginSignIn() {
      const oidc = await configuration();
      const flow: SignInFlow = {
        state: client.randomState(),
        nonce: client.randomNonce(),
        codeVerifier: client.randomPKCECodeVerifier(),
      };
      const parameters: Record<string, string> = {
        redirect_uri: config.callbackUrl,
        response_type: 'code',
        scope: SCOPE,
        state: flow.state,
        nonce: flow.nonce,
        code_challenge: await client.calculatePKCECodeChallenge(flow.codeVerifier),
        code_challenge_method: 'S256',
      };
      // Google preselects accounts of a single organisation; the domain is still checked on return.
      const [onlyDomain, ...otherDomains] = config.allowedDomains;
      if (onlyDomain !== undefined && otherDomains.length === 0) parameters['hd'] = onlyDomain;
      return { authorizationUrl: client.buildAuthorizationUrl(oidc, parameters), flow };
    },

    async completeSignIn(query, flow) {
      const oidc = await configuration();
      const callbackUrl = new URL(config.callbackUrl);
      callbackUrl.search = query;
      // openid-client checks the state too; checking it first gives a precise error.
      if (!sameString(callbackUrl.searchParams.get('state'), flow.state)) {
        throw new GoogleSignInError('invalid_state', 'state parameter does not match the sign-in cookie');
      }
      let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
      try {
        tokens = await client.authorizationCodeGrant(oidc, callbackUrl, {
          expectedState: flow.state,
          expectedNonce: flow.nonce,
          pkceCodeVerifier: flow.codeVerifier,
          idTokenExpected: true,
        });
      } catch (err) {
        throw toSignInError(err);
      }
      const claims = tokens.claims();
      if (claims === undefined) throw new GoogleSignInError('invalid_response', 'no ID token in the token response');
      return {
        sub: claims.sub,
        email: typeof claims['email'] === 'string' ? claims['email'] : undefined,
        // Google has been known to send the string "true".
        emailVerified: claims['email_verified'] === true || claims['email_verified'] === 'true',
        name: typeof claims['name'] === 'string' ? claims['name'] : undefined,
        hostedDomain: typeof claims['hd'] === 'string' ? claims['hd'] : undefined,
      };
    },
  };
}

function toSignInError(err: unknown): GoogleSignInError {
  const detail = describeLibraryError(err);
  if (err instanceof client.AuthorizationResponseError) {
    return new GoogleSignInError(err.error === 'access_denied' ? 'access_denied' : 'provider_error', detail);
  }
  if (err instanceof client.ResponseBodyError) {
    return new GoogleSignInError(err.error === 'invalid_grant' ? 'invalid_grant' : 'provider_error', detail);
  }
  if (err instanceof client.ClientError) {
    switch (err.code) {
      case 'OAUTH_TIMEOUT':
      case 'OAUTH_ABORT':
      case 'OAUTH_RESPONSE_IS_NOT_CONFORM':
      case 'OAUTH_RESPONSE_IS_NOT_JSON':
        return new GoogleSignInError('provider_unavailable', detail);
      default:
        return new GoogleSignInError('invalid_response', detail);
    }
  }
  // fetch() rejects with a TypeError when the provider cannot be reached.
  if (err instanceof TypeError && err.message === 'fetch failed') return new GoogleSignInError('provider_unavailable', detail);
  return new GoogleSignInError('server_error', detail);
}

/**
 * A log-safe summary of an openid-client error: its name, code and message, and its cause's
 * message (fixed texts such as `unexpected JWT "aud" (audience) claim value`). The causes
 * themselves hold the response parameters and claims, so they are never logged.
 */
function describeLibraryError(err: unknown): string {
  if (!(err instanceof Error)) return 'non-error thrown';
  const parts = [err.name];
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') parts.push(code);
  const oauthError = (err as { error?: unknown }).error;
  if (typeof oauthError === 'string') parts.push(`error=${oauthError}`);
  parts.push(err.message);
  if (err.cause instanceof Error) parts.push(`cause: ${err.cause.message}`);
  return parts.join(' | ');
}

function sameString(received: string | null, expected: string): boolean {
  if (received === null) return false;
  const a = Buffer.from(received);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}
