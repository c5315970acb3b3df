/** ImageMedix access tokens: HS256 JWTs from `jose`, carrying only the user id. */
import { jwtVerify, SignJWT } from 'jose';

const ISSUER = 'imagemedix';
const AUDIENCE = 'imagemedix-api';

export interface TokenService {
  issue(userId: string): Promise<string>;
  /** The user id of a valid token, or null for anything invalid or expired. */
  verify(token: string): Promise<string | null>;
}

export function createTokenService(secret: Uint8Array, expiresIn: string): TokenService {
  return {
    issue(userId) {
      return new SignJWT({})
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setSubject(userId)
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
        });
        return typeof payload.sub === 'string' ? payload.sub : null;
      } catch {
        return null;
      }
    },
  };
}
