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

export function createTokenService(secret: Uint8Array, expiresIn: string): TokenService {
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
      try {
        const { payload } = await jwtVerify(token, secret, {
          issuer: ISSUER,
          audience: AUDIENCE,
          algorithms: ['HS256'],
          requiredClaims: ['exp', 'sub'],
        });
        if (typeof payload.sub !== 'string' || typeof payload.ver !== 'number' || !Number.isInteger(payload.ver)) return null;
        return { userId: payload.sub, tokenVersion: payload.ver };
      } catch {
        return null;
      }
    },
  };
}
