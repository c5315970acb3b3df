/**
 * Serves the clinician web app (web/, built by Vite into web/dist) from the API's own origin,
 * so `npm start` gives a hospital the product at http://localhost:3000/ with no second server.
 *
 * Files are served as found at start-up (hashed assets cached for a year, index.html never),
 * and any other GET for a page (a browser asking for HTML, or any client asking for `/`) gets
 * index.html so client-side routes survive a reload. The API's own paths are never shadowed: an unknown /api, /files,
 * /reports or /docs path keeps its JSON 404.
 */
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Paths that belong to the API: never answered with the web app. */
const API_PREFIXES = ['/api', '/files', '/reports', '/docs', '/openapi.json', '/healthz', '/readyz'];
/** A missing built file is a 404, not a page. */
const NO_FALLBACK = [...API_PREFIXES, '/assets'];

const under = (url: string, prefixes: string[]) => {
  const pathname = url.split('?')[0] ?? '';
  return prefixes.some((p) => pathname === p || pathname.startsWith(`${p}/`));
};

/**
 * What the web app needs from a Content-Security-Policy: its own scripts and styles only
 * (Vite emits no inline script), images from the API's signed links and canvases (blob:,
 * data:), and fetches to the same origin. A site-wide CSP (helmet) must allow at least this.
 */
export const WEB_APP_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** The built web app next to this module (web/dist), or null when it was not built. */
export function defaultWebRoot(): string | null {
  const root = fileURLToPath(new URL('../../web/dist/', import.meta.url));
  return existsSync(path.join(root, 'index.html')) ? root : null;
}

/**
 * A browser asking for a page of the app (answered with index.html, whatever the path). The
 * home page is the app whatever the client accepts: no API lives at `/`, and `curl` or a
 * probe of the site (a wildcard Accept, or none) should find the product there too.
 */
export function isPageRequest(request: FastifyRequest): boolean {
  if (request.method !== 'GET' && request.method !== 'HEAD') return false;
  if (under(request.url, NO_FALLBACK)) return false;
  if ((request.url.split('?')[0] ?? '') === '/') return true;
  return (request.headers.accept ?? '').includes('text/html');
}

export interface WebApp {
  /** Answers a page request with index.html; null when the request is not one. */
  fallback(request: FastifyRequest, reply: FastifyReply): FastifyReply | null;
}

export async function registerWebApp(app: FastifyInstance, root: string): Promise<WebApp> {
  const indexHtml = readFileSync(path.join(root, 'index.html'));
  await app.register(async (scope) => {
    // Static files are not API calls: a page load must not spend the client's request budget.
    scope.addHook('onRoute', (route) => {
      route.config = { ...(route.config), rateLimit: false };
    });
    await scope.register(fastifyStatic, {
      root,
      wildcard: false,
      index: false,
      // Folders are not listed and index.html is served by the fallback (with its headers).
      globIgnore: ['index.html'],
      setHeaders(res, filePath) {
        const hashed = filePath.includes(`${path.sep}assets${path.sep}`);
        res.header('cache-control', hashed ? 'public, max-age=31536000, immutable' : 'no-cache');
        res.header('x-content-type-options', 'nosniff');
      },
    });
  });
  return {
    fallback(request, reply) {
      if (!isPageRequest(request)) return null;
      return reply
        .code(200)
        .header('content-type', 'text/html; charset=utf-8')
        .header('cache-control', 'no-cache')
        .header('content-security-policy', WEB_APP_CSP)
        .header('x-content-type-options', 'nosniff')
        .header('referrer-policy', 'no-referrer')
        .header('x-frame-options', 'DENY')
        .send(indexHtml);
    },
  };
}
