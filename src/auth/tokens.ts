/**
 * ImageMedix access tokens: short-lived HS256 JWTs from `jose`, carrying the user id and the
 * user's token version. Bumping the version (password change, deactivation, role change,
 * logout) refuses every token issued before, without a session table.
 */
import { jwtVerify, SignJWT } from 'jose';

const ISSUER = 'imagemedix';
const AUDIENCE = 'imagemedix-api';

interface TokenClaims {
  userId: string;
  tokenVersion: number;
}

export interface TokenService {
  issue(user: { id: string; tokenVersion: number }): Promise<string>;
  /** The claims of a valid token, or null for anything invalid, expired or without a version. */
  verify(token: string): Promise<TokenClaims | null>;
}

/** Tokens remembered as verified; beyond this the memory starts again. */
const MAX_VERIFIED = 10_000;

export function createTokenService(secret: Uint8Array, expiresIn: string): TokenService {
  // A token whose signature was checked once is the same bytes next time: only its expiry can
  // change the answer. Checking the HMAC through WebCrypto cost ~2 ms of the event loop per
  // request (the upload benchmark's profile), for every request of a signed-in client.
  // Revocation does not depend on this: the token version is checked against the user's row.
  const verified = new Map<string, TokenClaims & { expiresAtMs: number }>();
  return {
    issue(user) {
      return new SignJWT({ ver: user.tokenVersion })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(user.id)
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setIssuedAt()
        .setExpirationTime(expiresIn)
        .sign(secret);
    },
    async verify(token) {
      const known = verified.get(token);
      if (known) {
        if (Date.now() < known.expiresAtMs) return { userId: known.userId, tokenVersion: known.tokenVersion };
        verified.delete(token);
        return null;
      }
      try {
        const { payload } = await jwtVerify(token, secret, {
          issuer: ISSUER,
          audience: AUDIENCE,
          algorithms: ['HS256'],
          requiredClaims: ['exp', 'sub'],
        });
        if (typeof payload.sub !== 'string' || typeof payload.ver !== 'number' || !Number.isInteger(payload.ver)) return null;
        const claims = { userId: payload.sub, tokenVersion: payload.ver };
        if (verified.size >= MAX_VERIFIED) verified.clear();
        // jwtVerify required `exp`, so it is a number here.
        verified.set(token, { ...claims, expiresAtMs: payload.exp! * 1000 });
        return claims;
      } catch {
        return null;
      }
    },
  };
}
