/**
 * Signed, expiring links to patient files (HMAC-SHA256 over path, expiry and the user the
 * link was issued to), so an <img> tag can show a scan without a bearer header while the file
 * is never world-readable. The link names its user: the download is refused once that user
 * is deactivated or may no longer see the scan (scans/files.ts), and it is recorded in the
 * audit trail as theirs.
 */
import { createHmac, createSecretKey, timingSafeEqual } from 'node:crypto';

interface SignedQuery {
  expires?: string;
  user?: string;
  signature?: string;
}

type LinkVerdict = { ok: true; userId: string } | { ok: false; reason: 'expired' | 'invalid' };

export interface UrlSigner {
  /** `path` starts with "/"; returns an absolute URL when a base is given. */
  sign(path: string, base: string | null, opts: { userId: string; ttlSeconds?: number }): string;
  verify(path: string, query: SignedQuery): LinkVerdict;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function createUrlSigner(secret: Uint8Array, defaultTtlSeconds: number, now = () => Date.now()): UrlSigner {
  // The key imported once, not copied into each HMAC: a page of scans signs thirty links.
  const key = createSecretKey(secret);
  const mac = (path: string, expires: number, userId: string) =>
    createHmac('sha256', key).update(`url-v2\n${path}\n${expires}\n${userId}`).digest('base64url');
  return {
    sign(path, base, { userId, ttlSeconds = defaultTtlSeconds }) {
      const expires = Math.floor(now() / 1000) + ttlSeconds;
      const query = `expires=${expires}&user=${userId}&signature=${mac(path, expires, userId)}`;
      return `${base ?? ''}${path}?${query}`;
    },
    verify(path, { expires, user, signature }) {
      if (!expires || !signature || !user || !/^\d{1,15}$/.test(expires) || !UUID.test(user)) return { ok: false, reason: 'invalid' };
      const expected = Buffer.from(mac(path, Number(expires), user));
      const given = Buffer.from(signature);
      if (expected.length !== given.length || !timingSafeEqual(expected, given)) return { ok: false, reason: 'invalid' };
      if (Number(expires) * 1000 < now()) return { ok: false, reason: 'expired' };
      return { ok: true, userId: user };
    },
  };
}
