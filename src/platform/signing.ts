/**
 * Signed, expiring links to patient files (HMAC-SHA256 over path and expiry), so an <img> tag
 * can show a scan without a bearer header while the file is never world-readable.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface UrlSigner {
  /** `path` starts with "/"; returns an absolute URL when a base is given. */
  sign(path: string, base: string | null, ttlSeconds?: number): string;
  verify(path: string, expires: string | undefined, signature: string | undefined): 'ok' | 'expired' | 'invalid';
}

export function createUrlSigner(secret: Uint8Array, defaultTtlSeconds: number, now = () => Date.now()): UrlSigner {
  const mac = (path: string, expires: number) =>
    createHmac('sha256', secret).update(`url-v1\n${path}\n${expires}`).digest('base64url');
  return {
    sign(path, base, ttlSeconds = defaultTtlSeconds) {
      const expires = Math.floor(now() / 1000) + ttlSeconds;
      const query = `expires=${expires}&signature=${mac(path, expires)}`;
      return `${base ?? ''}${path}?${query}`;
    },
    verify(path, expires, signature) {
      if (!expires || !signature || !/^\d+$/.test(expires)) return 'invalid';
      const expected = Buffer.from(mac(path, Number(expires)));
      const given = Buffer.from(signature);
      if (expected.length !== given.length || !timingSafeEqual(expected, given)) return 'invalid';
      return Number(expires) * 1000 < now() ? 'expired' : 'ok';
    },
  };
}
