/**
 * Signed, expiring links to patient files (HMAC-SHA256 over path, expiry and the user the
 * link was issued to), so an <img> tag can show a scan without a bearer header while the file
 * is never world-readable. The link names its user: the download is refused once that user
 * is deactivated or may no longer see the scan (scans/files.ts), and it is recorded in the
 * audit trail as theirs.
 */
import { createHmac, createSecretKey, timingSafeEqual } from 'node:crypto';
import { isUuid } from './ids.js';

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

export function createUrlSigner(secret: Uint8Array, defaultTtlSeconds: number, now = () => Date.now()): UrlSigner {
  // The key imported once, not copied into each HMAC: a page of scans signs thirty links.
  const key = createSecretKey(secret);
  const mac = (path: string, expires: number, userId: string) =>
    createHmac('sha256', key).update(`url-v2\n${path}\n${expires}\n${userId}`).digest('base64url');
  // A link's expiry is rounded down to a step (a tenth of its lifetime, at most a minute), so the
  // same file for the same user gets the same link for that step and its HMAC is computed once:
  // a list page hands out thirty links, again on every request. A link lives between its
  // lifetime minus one step and its lifetime, never longer.
  const signatures = new Map<string, string>();
  const signature = (path: string, expires: number, userId: string) => {
    const key = `${expires}\n${userId}\n${path}`;
    let value = signatures.get(key);
    if (value === undefined) {
      if (signatures.size >= 20_000) signatures.clear();
      signatures.set(key, (value = mac(path, expires, userId)));
    }
    return value;
  };
  return {
    sign(path, base, { userId, ttlSeconds = defaultTtlSeconds }) {
      const step = Math.max(1, Math.min(60, Math.floor(ttlSeconds / 10)));
      const expires = Math.floor((now() / 1000 + ttlSeconds) / step) * step;
      const query = `expires=${expires}&user=${userId}&signature=${signature(path, expires, userId)}`;
      return `${base ?? ''}${path}?${query}`;
    },
    verify(path, { expires, user, signature }) {
      if (!expires || !signature || !user || !/^\d{1,15}$/.test(expires) || !isUuid(user)) return { ok: false, reason: 'invalid' };
      const expected = Buffer.from(mac(path, Number(expires), user));
      const given = Buffer.from(signature);
      if (expected.length !== given.length || !timingSafeEqual(expected, given)) return { ok: false, reason: 'invalid' };
      if (Number(expires) * 1000 < now()) return { ok: false, reason: 'expired' };
      return { ok: true, userId: user };
    },
  };
}
