// The state, nonce and PKCE verifier of a sign-in in progress live in the browser, in an
// encrypted (JWE, A256GCM), short-lived, httpOnly cookie scoped to the callback path, so
// any server instance can finish the sign-in and nothing is stored server-side.
import { hkdfSync } from 'node:crypto';

import { EncryptJWT, jwtDecrypt } from 'jose';

export interface SignInFlow {
  state: string;
  nonce: string;
  codeVerifier: string;
}

const FLOW_COOKIE_NAME = 'imagemedix_google_signin';
const FLOW_TTL_SECONDS = 600;
const AUDIENCE = 'imagemedix:google-sign-in';

export interface FlowCookie {
  /** A Set-Cookie header value holding the sealed flow. */
  seal(flow: SignInFlow): Promise<string>;
  /** The flow from a Cookie header, or undefined if absent, expired or not ours. */
  open(cookieHeader: string | undefined): Promise<SignInFlow | undefined>;
  /** A Set-Cookie header value that deletes the cookie. */
  readonly clear: string;
}

export function createFlowCookie(opts: { secret: Uint8Array; callbackUrl: string }): FlowCookie {
  if (opts.secret.byteLength < 32) throw new Error('the Google sign-in state secret must be at least 32 bytes');
  // A key of its own, so the secret can be shared with other uses without key reuse.
  const key = new Uint8Array(hkdfSync('sha256', opts.secret, new Uint8Array(0), 'imagemedix google sign-in flow cookie', 32));
  const callback = new URL(opts.callbackUrl);
  const attributes = [`Path=${callback.pathname}`, 'HttpOnly', 'SameSite=Lax', ...(callback.protocol === 'https:' ? ['Secure'] : [])];

  return {
    async seal(flow) {
      const jwe = await new EncryptJWT({ s: flow.state, n: flow.nonce, v: flow.codeVerifier })
        .setProtectedHeader({ alg: 'dir', enc: 'A256GCM' })
        .setAudience(AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(`${FLOW_TTL_SECONDS}s`)
        .encrypt(key);
      return [`${FLOW_COOKIE_NAME}=${jwe}`, `Max-Age=${FLOW_TTL_SECONDS}`, ...attributes].join('; ');
    },
    async open(cookieHeader) {
      const value = readCookie(cookieHeader, FLOW_COOKIE_NAME);
      if (value === undefined) return undefined;
      try {
        const { payload } = await jwtDecrypt(value, key, {
          audience: AUDIENCE,
          keyManagementAlgorithms: ['dir'],
          contentEncryptionAlgorithms: ['A256GCM'],
          requiredClaims: ['exp', 'iat'],
        });
        const { s, n, v } = payload;
        if (typeof s !== 'string' || typeof n !== 'string' || typeof v !== 'string') return undefined;
        return { state: s, nonce: n, codeVerifier: v };
      } catch {
        return undefined;
      }
    },
    clear: [`${FLOW_COOKIE_NAME}=`, 'Max-Age=0', ...attributes].join('; '),
  };
}

function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const pair of header.split(';')) {
    const separator = pair.indexOf('=');
    if (separator !== -1 && pair.slice(0, separator).trim() === name) return pair.slice(separator + 1).trim();
  }
  return undefined;
}
