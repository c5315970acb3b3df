/**
 * Signed file links: scan images, thumbnails, heatmaps and reports are fetched with an
 * expiring HMAC signature instead of a bearer token, so an <img> tag or a download link works
 * while the files are never world-readable. The signature covers the path, so only links the
 * server handed out can be followed.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { AppContext } from '../context.js';
import { AppError, notFound } from '../platform/errors.js';
import { ErrorSchema } from '../platform/http/schemas.js';
import { StorageNotFoundError, type Storage } from '../platform/storage/index.js';
import type { UrlSigner } from '../platform/signing.js';
import { reportKey } from './report.js';
import { ReportFileParamsSchema, SignedQuerySchema } from './schemas.js';

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const SCAN_FILE = new RegExp(`^scans/${UUID}/(?:[A-Za-z0-9][A-Za-z0-9._-]*/)*[A-Za-z0-9][A-Za-z0-9._-]*\\.png$`);
const REPORT_FILE = new RegExp(`^report-(${UUID})-(${UUID})\\.pdf$`);

export type SignedFile =
  | { ok: true; body: Buffer; contentType: string; expiresAt: number; filename?: string }
  | { ok: false; expired: true };

async function readSigned(
  { storage, signer }: { storage: Storage; signer: UrlSigner },
  { path, key, expires, signature }: { path: string; key: string | null; expires?: string; signature?: string },
): Promise<{ body: Buffer; expiresAt: number } | 'expired'> {
  const verdict = signer.verify(path, expires, signature);
  if (verdict === 'invalid' || key === null) {
    throw new AppError('forbidden', 'This file link is not valid: use the imageUrl, thumbnailUrl or reportUrl the API returned');
  }
  if (verdict === 'expired') return 'expired';
  try {
    return { body: await storage.get(key), expiresAt: Number(expires) };
  } catch (err) {
    if (err instanceof StorageNotFoundError) throw notFound('File');
    throw err;
  }
}

/** A scan image, thumbnail or heatmap by its signed link. */
export async function openScanFile(
  deps: { storage: Storage; signer: UrlSigner },
  { rest, expires, signature }: { rest: string; expires?: string; signature?: string },
): Promise<SignedFile> {
  const key = SCAN_FILE.test(rest) && !rest.includes('..') ? rest : null;
  const out = await readSigned(deps, { path: `/files/${rest}`, key, expires, signature });
  if (out === 'expired') return { ok: false, expired: true };
  return { ok: true, body: out.body, contentType: 'image/png', expiresAt: out.expiresAt };
}

/** A stored report by its signed link. */
export async function openReportFile(
  deps: { storage: Storage; signer: UrlSigner },
  { file, expires, signature }: { file: string; expires?: string; signature?: string },
): Promise<SignedFile> {
  const m = REPORT_FILE.exec(file);
  const key = m ? reportKey(m[1]!, m[2]!) : null;
  const out = await readSigned(deps, { path: `/reports/${file}`, key, expires, signature });
  if (out === 'expired') return { ok: false, expired: true };
  return {
    ok: true,
    body: out.body,
    contentType: 'application/pdf',
    expiresAt: out.expiresAt,
    filename: `report-${m![1]}.pdf`,
  };
}

const fileResponses = (contentType: string) => ({
  200: Type.Unsafe<Buffer>({ type: 'string', format: 'binary', description: contentType }),
  403: ErrorSchema,
  404: ErrorSchema,
  410: ErrorSchema,
});
const EXPIRED = 'This link has expired: fetch the scan again for a fresh link';

export function fileRoutes(ctx: AppContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    const tags = ['Files'];
    // Links are checked (one HMAC) before any I/O, and a page of scans loads many thumbnails
    // at once, so the per-client request limit does not apply here.
    const config = { rateLimit: false } as const;

    app.get(
      '/files/*',
      {
        config,
        schema: {
          tags,
          summary: 'A scan image, thumbnail or heatmap by the signed link the API returned (no bearer token)',
          params: Type.Object({ '*': Type.String({ maxLength: 300 }) }),
          querystring: SignedQuerySchema,
          response: fileResponses('image/png'),
        },
      },
      async (request, reply) => {
        const file = await openScanFile(ctx, { rest: request.params['*'], ...request.query });
        if (!file.ok) return reply.code(410).send({ error: EXPIRED });
        const maxAge = Math.max(0, file.expiresAt - Math.floor(Date.now() / 1000));
        return reply
          .header('content-type', file.contentType)
          .header('cache-control', `private, max-age=${maxAge}`)
          .header('x-content-type-options', 'nosniff')
          .send(file.body);
      },
    );

    app.get(
      '/reports/:file',
      {
        config,
        schema: {
          tags,
          summary: 'A generated PDF report by the signed reportUrl (no bearer token)',
          params: ReportFileParamsSchema,
          querystring: SignedQuerySchema,
          response: fileResponses('application/pdf'),
        },
      },
      async (request, reply) => {
        const file = await openReportFile(ctx, { file: request.params.file, ...request.query });
        if (!file.ok) return reply.code(410).send({ error: EXPIRED });
        const maxAge = Math.max(0, file.expiresAt - Math.floor(Date.now() / 1000));
        return reply
          .header('content-type', file.contentType)
          .header('content-disposition', `attachment; filename="${file.filename}"`)
          .header('cache-control', `private, max-age=${maxAge}`)
          .header('x-content-type-options', 'nosniff')
          .send(file.body);
      },
    );
  };
}
