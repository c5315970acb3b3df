/**
 * Signed file links: scan images, thumbnails, heatmaps and reports are fetched with an
 * expiring HMAC signature instead of a bearer token, so an <img> tag or a download link works
 * while the files are never world-readable. The signature covers the path, the expiry and the
 * user the link was issued to; a link is refused once that user is deactivated or may no longer
 * see the scan (issue 12, item 9), and each download is recorded in the audit trail as theirs.
 */
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppContext, Feature } from '../context.js';
import { bearerToken } from '../auth/hooks.js';
import { requireVisibleScan, type ScanRow, type Viewer } from '../access/index.js';
import { ImageDecodeError } from '../imaging/index.js';
import type { Db } from '../platform/db/index.js';
import { AppError, notFound, RETRY_AFTER_SECONDS } from '../platform/errors.js';
import { UUID_PATTERN } from '../platform/ids.js';
import { ErrorSchema } from '../platform/http/schemas.js';
import { StorageNotFoundError, type Storage } from '../platform/storage/index.js';
import type { UrlSigner } from '../platform/signing.js';
import { findUserById } from '../users/repository.js';
import { noteAudit } from '../audit/log.js';
import type { ScanHeatmaps } from './heatmaps.js';
import type { ScanRenditions } from './renditions.js';
import { reportStorageKey } from './repository.js';
import { ReportFileParamsSchema, SignedQuerySchema } from './schemas.js';

/**
 * A scan's PNG: `scans/<2 hex>/<scanId>.<name>.png` (src/scans/stored-files.ts), or under the
 * folder of a scan stored before that layout, `scans/<scanId>/.../<name>.png`.
 */
const SCAN_FILE = new RegExp(
  `^scans/(?:(${UUID_PATTERN})/(?:[A-Za-z0-9][A-Za-z0-9._-]*/)*[A-Za-z0-9][A-Za-z0-9._-]*|([0-9a-f]{2})/(${UUID_PATTERN})\\.[A-Za-z0-9][A-Za-z0-9_-]*)\\.png$`,
);

/** The scan whose file `key` is, or null when it is no scan file's key. */
function scanOfFile(key: string): string | null {
  const m = key.includes('..') ? null : SCAN_FILE.exec(key);
  if (!m) return null;
  if (m[1]) return m[1];
  // A sharded key's folder is its scan id's first two digits; any other folder is no scan's.
  return m[3]!.startsWith(m[2]!) ? m[3]! : null;
}
/** report-<scanId>-<reportId>.pdf (a signed link) or report-<scanId>.pdf (the document's path: the latest). */
const REPORT_FILE = new RegExp(`^report-(${UUID_PATTERN})(?:-(${UUID_PATTERN}))?\\.pdf$`);

type SignedFile =
  | { ok: true; body: Buffer; contentType: string; filename?: string; userId: string; scanId: string; patientId: string }
  | { ok: false; expired: true };

type FileDeps = { db: Db; storage: Storage; signer: UrlSigner; renditions: ScanRenditions; heatmaps: ScanHeatmaps };
/** How the request proves it may have the file: the link's signature, or a bearer token's user. */
type Credentials = { expires?: string; user?: string; signature?: string; viewer?: Viewer | null };

const INVALID = 'This file link is not valid: use the imageUrl, thumbnailUrl or reportUrl the API returned, or send a bearer token';
const NO_SUCH_PATH = 'No scan file or report has this path: use the imageUrl, thumbnailUrl or reportUrl the API returned';

async function read(storage: Storage, key: string): Promise<Buffer> {
  try {
    return await storage.get(key);
  } catch (err) {
    if (err instanceof StorageNotFoundError) throw notFound('File');
    throw err;
  }
}

/** Why an image drawn on its first read could not be: the reader's answer. */
function imageNotShown(err: unknown, what: string): unknown {
  if (err instanceof StorageNotFoundError) return notFound('File');
  if (err instanceof ImageDecodeError && err.transient) {
    // Ran out of time on a busy server: the file may be fine, so the reader is told to retry.
    return new AppError(
      'unavailable',
      `This scan's ${what} is still being prepared and the server is busy; try again in a moment.`,
      RETRY_AFTER_SECONDS.busy,
    );
  }
  if (err instanceof ImageDecodeError) return new AppError('unprocessable', `This scan's ${what} could not be shown: ${err.message}`);
  return err;
}

/**
 * Checks the credentials for `path`: a signature wins when given; else a signed-in viewer must
 * be able to see the scan (not theirs answers like not there). Returns the link's expiry.
 */
async function authorise(
  deps: FileDeps,
  { path, scanId, expires, user, signature, viewer }: Credentials & { path: string; scanId: string | null },
): Promise<{ userId: string; scan: ScanRow } | 'expired'> {
  if (scanId === null) {
    // With a bearer token the path alone is wrong (no scan file or report has it): "send a bearer
    // token" would send the reader looking at the credentials they already sent.
    if (viewer && signature === undefined && expires === undefined) throw new AppError('not_found', NO_SUCH_PATH);
    throw new AppError('forbidden', INVALID);
  }
  if (signature !== undefined || expires !== undefined || !viewer) {
    const verdict = deps.signer.verify(path, { expires, user, signature });
    if (!verdict.ok && verdict.reason === 'invalid') throw new AppError('forbidden', INVALID);
    if (!verdict.ok) return 'expired';
    // The link's user must still be active and still see the scan: a link dies with its
    // user's access (a scan they may no longer see is "not there").
    const owner = await findUserById(deps.db, verdict.userId);
    if (!owner || !owner.isActive) throw new AppError('forbidden', INVALID);
    const { scan } = await requireVisibleScan(deps.db, { id: owner.id, role: owner.role }, scanId);
    return { userId: owner.id, scan };
  }
  const { scan } = await requireVisibleScan(deps.db, viewer, scanId);
  return { userId: viewer.id, scan };
}

/**
 * The display image or thumbnail of a scan; rendered now when the upload stored only the
 * original and the worker has not rendered it yet, so the links an upload returns work at once.
 */
async function readRendition(deps: FileDeps, scan: ScanRow, which: 'image' | 'thumbnail'): Promise<Buffer> {
  try {
    return await deps.renditions.read(scan, which);
  } catch (err) {
    throw imageNotShown(err, 'image');
  }
}

/**
 * Any other file of the scan: a heatmap (drawn from its analysis's map now, on its first read,
 * src/scans/heatmaps.ts), or a file stored as it is served.
 */
async function readOtherFile(deps: FileDeps, scan: ScanRow, key: string): Promise<Buffer> {
  try {
    return await deps.heatmaps.read(scan, key);
  } catch (err) {
    throw imageNotShown(err, 'heatmap');
  }
}

/** A scan image, thumbnail or heatmap by its signed link or with a bearer token. */
async function openScanFile(deps: FileDeps, { rest, ...credentials }: Credentials & { rest: string }): Promise<SignedFile> {
  const out = await authorise(deps, { path: `/files/${rest}`, scanId: scanOfFile(rest), ...credentials });
  if (out === 'expired') return { ok: false, expired: true };
  const { scan } = out;
  const body =
    rest === scan.imageKey
      ? await readRendition(deps, scan, 'image')
      : rest === scan.thumbnailKey
        ? await readRendition(deps, scan, 'thumbnail')
        : await readOtherFile(deps, scan, rest);
  return { ok: true, body, contentType: 'image/png', userId: out.userId, scanId: scan.id, patientId: scan.patientId };
}

/** A stored report by its signed link, or with a bearer token (the documented path gives the latest). */
async function openReportFile(deps: FileDeps, { file, ...credentials }: Credentials & { file: string }): Promise<SignedFile> {
  const m = REPORT_FILE.exec(file);
  const scanId = m?.[1] ?? null;
  const out = await authorise(deps, { path: `/reports/${file}`, scanId, ...credentials });
  if (out === 'expired') return { ok: false, expired: true };
  const reportId = m![2] ?? null;
  // The row's key: a report stored before the shard layout keeps its older one.
  const key = await reportStorageKey(deps.db, scanId!, reportId);
  const patientId = out.scan.patientId;
  if (!key && reportId) throw notFound('File');
  if (!key) throw new AppError('not_found', 'No report has been generated for this scan yet: POST /api/scans/:id/report makes one');
  return {
    ok: true,
    body: await read(deps.storage, key),
    contentType: 'application/pdf',
    filename: `report-${scanId}.pdf`,
    userId: out.userId,
    scanId: scanId!,
    patientId,
  };
}

const fileResponses = (contentType: string) => ({
  200: Type.Unsafe<Buffer>({ type: 'string', format: 'binary', description: contentType }),
  401: ErrorSchema,
  403: ErrorSchema,
  404: ErrorSchema,
  410: ErrorSchema,
  422: ErrorSchema,
  // An image still being rendered on a busy server: with Retry-After, the reader tries again.
  503: ErrorSchema,
});
const EXPIRED = 'This link has expired: fetch the scan again for a fresh link';
// A scan's answer carries image links but no report link: say what does work.
const REPORT_EXPIRED =
  'This report link has expired: fetch the same path without its query with your bearer token, or generate the report again (POST /api/scans/:id/report)';


function fileRoutes(ctx: AppContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    const tags = ['Files'];
    // Links are checked (one HMAC) before any I/O, and a page of scans loads many thumbnails
    // at once, so the per-client request limit does not apply here.
    const config = { rateLimit: false } as const;
    const deps: FileDeps = {
      db: ctx.db,
      storage: ctx.storage,
      signer: ctx.signer,
      renditions: ctx.renditions,
      heatmaps: ctx.heatmaps,
    };

    /** The signed-in user when the request has no signature but a bearer token (401 when it is bad). */
    async function viewerOf(request: FastifyRequest, reply: FastifyReply, query: { expires?: string; user?: string; signature?: string }) {
      if (query.expires !== undefined || query.signature !== undefined || query.user !== undefined || !bearerToken(request)) return null;
      // The auth hook is async (typed as a hook that may also be callback-style).
      await Promise.resolve(ctx.authenticate.call(app, request, reply, () => undefined));
      return request.user;
    }

    app.get(
      '/files/*',
      {
        config: { ...config, audit: { action: 'file.download', resource: 'scan' } },
        schema: {
          tags,
          summary: 'A scan image, thumbnail or heatmap: by the signed link the API returned, or its path with a bearer token',
          params: Type.Object({ '*': Type.String({ maxLength: 300 }) }),
          querystring: SignedQuerySchema,
          response: fileResponses('image/png'),
        },
      },
      async (request, reply) => {
        const viewer = await viewerOf(request, reply, request.query);
        const file = await openScanFile(deps, { rest: request.params['*'], ...request.query, viewer });
        if (!file.ok) return reply.code(410).send({ error: EXPIRED });
        noteAudit(request, { actor: { id: file.userId, role: request.user?.role ?? null }, resourceId: file.scanId, patientIds: [file.patientId] });
        return reply
          .header('content-type', file.contentType)
          // Patient images and reports stay out of browser and proxy caches (issue 12, item 7).
          .header('cache-control', 'no-store')
          .header('x-content-type-options', 'nosniff')
          .send(file.body);
      },
    );

    app.get(
      '/reports/:file',
      {
        config: { ...config, audit: { action: 'report.download', resource: 'scan' } },
        schema: {
          tags,
          summary: 'A generated PDF report: by the signed reportUrl, or with a bearer token',
          description:
            'Signed: `/reports/report-<scanId>-<reportId>.pdf?expires=...&signature=...` as reportUrl gives it, no token needed. With `Authorization: Bearer <token>` of someone who may see the scan: that path without its query, or the documented `/reports/report-<scanId>.pdf`, which is the latest report of the scan.',
          params: ReportFileParamsSchema,
          querystring: SignedQuerySchema,
          response: fileResponses('application/pdf'),
        },
      },
      async (request, reply) => {
        const viewer = await viewerOf(request, reply, request.query);
        const file = await openReportFile(deps, { file: request.params.file, ...request.query, viewer });
        if (!file.ok) return reply.code(410).send({ error: REPORT_EXPIRED });
        noteAudit(request, { actor: { id: file.userId, role: request.user?.role ?? null }, resourceId: file.scanId, patientIds: [file.patientId] });
        return reply
          .header('content-type', file.contentType)
          .header('content-disposition', `attachment; filename="${file.filename}"`)
          // Patient images and reports stay out of browser and proxy caches (issue 12, item 7).
          .header('cache-control', 'no-store')
          .header('x-content-type-options', 'nosniff')
          .send(file.body);
      },
    );
  };
}

/** Signed file links (/files/..., /reports/...). */
export const scanFilesFeature: Feature = { prefix: '', routes: fileRoutes };
