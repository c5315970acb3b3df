import multipart from '@fastify/multipart';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { currentUser, requireAdmin } from '../auth/hooks.js';
import { auditInAdvance, noteAudit, noteLinkIssued } from '../audit/log.js';
import { STATEMENT_PATIENT } from '../audit/repository.js';
import type { AppContext, Feature } from '../context.js';
import { RETRY_AFTER_SECONDS } from '../platform/errors.js';
import { sendKeptArray } from '../platform/http/kept-json.js';
import { authErrors, ErrorSchema, IdParamsSchema, MessageSchema } from '../platform/http/schemas.js';
import { SCAN_TYPE_IDS } from '../scan-types/index.js';
import { generateReport } from './report.js';
import {
  AnnotationBodySchema,
  AnnotationsResponseSchema,
  ListScansQuerySchema,
  ReportResponseSchema,
  ReviewBodySchema,
  ReviewHeadersSchema,
  ScanDetailSchema,
  ScanListSchema,
  PixelsResponseHeaders,
  ScanStatusResponseSchema,
  StatusStreamQuerySchema,
  UploadConflictSchema,
  UploadResponseSchema,
} from './schemas.js';
import { openStatusStream, parseScanIds } from './status-stream.js';
import * as scans from './service.js';
import { DICOM_MEDIA_TYPE, readUploadForm } from './upload.js';
import { fileLinks, type FileLinks } from './view.js';

/**
 * Links are relative paths, as in the API document (`/reports/report-<id>.pdf`), so they
 * never depend on a Host header the client controls; absolute on PUBLIC_URL when it is set.
 * Each is signed for the user who asked: refused once that user may no longer see the scan.
 */
function linksFor(ctx: AppContext, request: FastifyRequest): FileLinks {
  const links = fileLinks(ctx.signer, ctx.config.publicUrl, currentUser(request).id);
  // Handing out a link is an export of the file: the audit trail records it (link.issue).
  const noteFile = (key: string, scanId: string) => {
    // The file's name: after its scan's id in a sharded key (stored-files.ts), the last part of an older one.
    const last = key.slice(key.lastIndexOf('/') + 1);
    const name = last.startsWith(`${scanId}.`) ? last.slice(scanId.length + 1) : last;
    noteLinkIssued(request, scanId, name.startsWith('thumb') ? 'thumbnail' : name.startsWith('heatmap') ? 'heatmap' : name.startsWith('image') ? 'image' : 'file');
  };
  return {
    file(key, scanId) {
      noteFile(key, scanId);
      return links.file(key, scanId);
    },
    report(scanId, reportId) {
      noteLinkIssued(request, scanId, 'report');
      return links.report(scanId, reportId);
    },
    handedOut(files) {
      for (const [key, scanId] of files) noteFile(key, scanId);
    },
  };
}

function scanRoutes(ctx: AppContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    // A status stream lasts until its scans finish (minutes behind a queue): the server's
    // shutdown ends them at once, instead of waiting for them as for any request in flight.
    // The browser reconnects, to this server once restarted or to another one.
    const openStreams = new Set<() => void>();
    app.addHook('preClose', async () => {
      for (const close of openStreams) close();
    });
    await app.register(multipart, { throwFileSizeLimit: true });
    // A DICOM file as the whole body: left unread here (no request.body), for readUploadForm
    // to read from the request stream with the size limit and streaming of a form's file.
    app.addContentTypeParser(DICOM_MEDIA_TYPE, (_request, _payload, done) => done(null));
    app.addHook('onRequest', ctx.authenticate);
    const tags = ['Scans'];
    const security = [{ bearerAuth: [] }];

    app.post(
      '/',
      {
        config: { audit: { action: 'scan.upload', resource: 'scan' } },
        schema: {
          tags,
          security,
          summary: 'Upload a scan (JPEG, PNG or DICOM Part 10)',
          description: [
            'multipart/form-data with the fields:',
            '- `image` (file, required): JPEG, PNG or DICOM Part 10; the type is read from the bytes, never from the file name or Content-Type.',
            "- `patientId`: the patient's hospital identifier (`PT-20250505-001`) or `_id`, as `GET /api/patients/:id` accepts; from the DICOM header when absent. An unknown hospital identifier creates the patient from `patientName`, assigned to you; an unknown `_id` is 404.",
            "- `patientName`: required to create a patient (400 without it); from the DICOM header when absent. For an existing patient it may be left out; when sent it must match the patient's name on record (case and spacing aside), else 409.",
            '- `scanDate` (optional, ISO 8601): from the DICOM StudyDate when absent, else now.',
            '- `confirmDicomPatientId` (optional): a DICOM file whose header PatientID is not the form\'s `patientId` (case and spaces aside) is refused with 409, naming both (the header\'s as `dicomPatientId` too), and stores nothing: a file of another patient. Send this field with the header\'s PatientID to confirm the file is this patient\'s (an outside study under another hospital\'s identifier); it is then filed under the form\'s patient. A matching, placeholder or absent header PatientID needs no confirmation.',
            "- `confirmDicomPatientName` (optional): a DICOM file whose header PatientName shares no word with the patient's name (the form's `patientName`, else the record's; order, case, accents, initials and DICOM's `^` aside, so `MEHTA^PRIYA` is Priya Mehta) is refused with 409, with the header's name as `dicomPatientName`, and stores nothing: a record-number collision or a worklist mix-up. Send this field with that name to confirm the file is this patient's (a name changed since, or written in another script). An absent, placeholder, initials-only or de-identified (`ANONYMOUS`) header name needs no confirmation; a DICOM file sent as the whole body is refused alike, and confirmed by sending it as a form.",
            `- \`scanType\` (optional, ${SCAN_TYPE_IDS.map((t) => `\`${t}\``).join(' or ')}): which analysis applies; inferred from DICOM Modality and BodyPartExamined when absent. With a scan type the scan is queued for analysis (\`processing\`), else it is \`pending\`.`,
            '',
            '',
            `Or a DICOM Part 10 file as the whole body, with \`Content-Type: ${DICOM_MEDIA_TYPE}\` (as STOW-RS and Orthanc's \`POST /instances\` take it): the patient, scan date and scan type then come from the DICOM header, as for a form without those fields (400 when it has no PatientID; a new patient needs its PatientName), with the same access rules, checks and answers. A JPEG or PNG body is refused with 415: send it as a form.`,
            '',
            `Over MAX_UPLOAD_MB: 413. Not JPEG, PNG or DICOM: 415. Corrupt or truncated: 400. A DICOM encoding that cannot be decoded: 422.`,
            `An upload the database committed is answered 201 even when the database's answer to the commit was lost. 503, with Retry-After (${RETRY_AFTER_SECONDS.databaseOutage} seconds), when the database could not confirm either way: after that, look for the scan in the patient's scans before sending it again.`,
          ].join('\n'),
          consumes: ['multipart/form-data', DICOM_MEDIA_TYPE],
          response: { 201: UploadResponseSchema, ...authErrors, 409: UploadConflictSchema, 413: ErrorSchema, 415: ErrorSchema, 422: ErrorSchema, 503: ErrorSchema },
        },
      },
      async (request, reply) => {
        const viewer = currentUser(request);
        const form = await readUploadForm(request, { maxUploadMb: ctx.config.maxUploadMb, storage: ctx.storage, log: request.log });
        const scan = await scans.uploadScan(ctx, {
          viewer,
          form,
          links: linksFor(ctx, request),
          log: request.log,
          // The audit line names the patient without looking the new scan up again.
          onPatient: (patientId) => noteAudit(request, { patientIds: [patientId] }),
          // Its events, as the hook would write them for the 201 and its two links, are
          // committed with the scan (one statement, no INSERT after it).
          audit: (scanId) =>
            auditInAdvance(ctx, request, {
              statusCode: 201,
              answer: { _id: scanId },
              note: { patientIds: [STATEMENT_PATIENT] },
              links: new Map([[scanId, new Set(['image', 'thumbnail'] as const)]]),
            }),
        });
        request.log.info({ scan: scan._id, status: scan.status }, 'scan uploaded');
        return reply.code(201).send(scan);
      },
    );

    app.get(
      '/',
      {
        config: { audit: { action: 'scan.list', resource: 'scan' } },
        schema: {
          tags,
          security,
          summary: 'List the scans you may see, newest scan date first',
          querystring: ListScansQuerySchema,
          response: { 200: ScanListSchema, ...authErrors },
        },
      },
      async (request, reply) => {
        const page = await scans.listScans(ctx.db, {
          viewer: currentUser(request),
          query: request.query,
          links: linksFor(ctx, request),
          // The audit event names the page's patients without querying them again.
          onPatients: (patientIds) => noteAudit(request, { patientIds }),
        });
        // A kept page's views are the same array again: their JSON is kept with them.
        return sendKeptArray(reply, 'scans', page);
      },
    );

    app.get(
      '/:id',
      {
        config: { audit: { action: 'scan.read', resource: 'scan' } },
        schema: {
          tags,
          security,
          summary: 'A scan with its result, the model output, the review and annotations',
          description: 'ETag: the `findingVersion`, for If-Match on a review (PATCH).',
          params: IdParamsSchema,
          response: { 200: ScanDetailSchema, ...authErrors },
        },
      },
      async (request, reply) => {
        const scan = await scans.getScan(ctx.db, { viewer: currentUser(request), id: request.params.id, links: linksFor(ctx, request) });
        return reply.header('etag', `"${scan.findingVersion}"`).send(scan);
      },
    );

    app.get(
      '/:id/pixels',
      {
        config: { audit: { action: 'scan.read_pixels', resource: 'scan' } },
        schema: {
          tags,
          security,
          summary: "A DICOM scan's original pixel values (modality units), for window/level in a viewer",
          description: [
            'The first frame, after the modality rescale (slope and intercept), not the 8-bit rendering of imageUrl.',
            'Body: width x height little-endian samples, row by row. Headers:',
            ...Object.entries(PixelsResponseHeaders).map(([name, meaning]) => `- \`${name}\`: ${meaning}`),
            '',
            'A scan uploaded as JPEG or PNG has none: 409. A colour DICOM: 422.',
          ].join('\n'),
          params: IdParamsSchema,
          response: {
            200: Type.Unsafe<Buffer>({ type: 'string', format: 'binary', description: 'application/octet-stream' }),
            ...authErrors,
            409: ErrorSchema,
            422: ErrorSchema,
          },
        },
      },
      async (request, reply) => {
        const px = await scans.scanPixels(ctx, { viewer: currentUser(request), id: request.params.id });
        return reply
          .header('content-type', 'application/octet-stream')
          // Patient image data stays out of browser and proxy caches (issue 12, item 7).
          .header('cache-control', 'no-store')
          .header('x-image-width', String(px.width))
          .header('x-image-height', String(px.height))
          .header('x-pixel-format', px.format)
          .header('x-window-center', String(px.window.center))
          .header('x-window-width', String(px.window.width))
          .header('x-pixel-min', String(px.min))
          .header('x-pixel-max', String(px.max))
          .header('x-photometric-invert', String(px.invert))
          .send(Buffer.from(px.data.buffer, px.data.byteOffset, px.data.byteLength));
      },
    );

    app.get(
      '/events',
      {
        config: { audit: { action: 'scan.watch_status', resource: 'scan' } },
        schema: {
          tags,
          security,
          summary: 'Follow the status of up to 50 scans live (server-sent events)',
          description: [
            'text/event-stream. Each `status` event carries a ScanStatusEvent as JSON: every scan at once, then each change',
            '(status, job state, progress, stage). `end` when every scan is completed, failed, pending without analysis or',
            'gone; the stream then closes. It also closes after 5 minutes: reconnect to go on following. A scan that is not',
            'yours answers 404 before the stream opens. The sign-in is checked again every second: when the token has',
            'expired or the session ended (sign-out, password change, deactivation) the stream closes without `end`, and',
            'reconnecting answers 401.',
          ].join(' '),
          querystring: StatusStreamQuerySchema,
          response: {
            200: Type.Unsafe<string>({ type: 'string', description: 'text/event-stream of ScanStatusEvent' }),
            ...authErrors,
          },
        },
      },
      async (request, reply) => {
        const viewer = currentUser(request);
        const ids = parseScanIds(request.query.ids);
        noteAudit(request, { scanIds: ids });
        const { stream, close } = await openStatusStream(ctx, {
          viewer,
          ids,
          reauthorize: async () => {
            // The same hook as every API route (token, expiry, session version, active account).
            const checked: unknown = ctx.authenticate.call(app, request, reply, () => undefined);
            await checked;
            return currentUser(request);
          },
          onError: (err) => request.log.error({ err }, 'scan status stream failed'),
        });
        openStreams.add(close);
        request.raw.on('close', () => {
          openStreams.delete(close);
          close();
        });
        return reply
          .header('content-type', 'text/event-stream; charset=utf-8')
          .header('cache-control', 'no-store')
          .header('x-accel-buffering', 'no')
          .send(stream);
      },
    );

    app.get(
      '/:id/status',
      {
        config: { audit: { action: 'scan.read_status', resource: 'scan' } },
        schema: {
          tags,
          security,
          summary: "The scan's status and the progress of its analysis job",
          params: IdParamsSchema,
          response: { 200: ScanStatusResponseSchema, ...authErrors },
        },
      },
      async (request) =>
        scans.scanStatus(ctx, {
          viewer: currentUser(request),
          id: request.params.id,
          onPatient: (patientId) => noteAudit(request, { patientIds: [patientId] }),
        }),
    );

    app.patch(
      '/:id',
      {
        config: { audit: { action: 'scan.review', resource: 'scan' } },
        schema: {
          tags,
          security,
          summary: "A physician's review: stored beside the model output, which is never overwritten",
          description:
            'With `If-Match` (the ETag of GET /api/scans/:id, or its `findingVersion`), a review of a finding that changed since it was loaded (another review, a newer analysis) is not saved: 412. The answer carries the new ETag.',
          params: IdParamsSchema,
          headers: ReviewHeadersSchema,
          body: ReviewBodySchema,
          response: { 200: ScanDetailSchema, ...authErrors, 412: ErrorSchema },
        },
      },
      async (request, reply) => {
        const scan = await scans.reviewScan(ctx.db, {
          viewer: currentUser(request),
          id: request.params.id,
          body: request.body,
          ifMatch: request.headers['if-match'],
          links: linksFor(ctx, request),
        });
        request.log.info({ scan: scan._id, status: scan.status }, 'scan reviewed');
        return reply.header('etag', `"${scan.findingVersion}"`).send(scan);
      },
    );

    app.post(
      '/:id/annotations',
      {
        config: { audit: { action: 'scan.annotate', resource: 'scan' } },
        schema: {
          tags,
          security,
          summary: 'Annotate a point of the scan image (pixel coordinates of the rendered image)',
          params: IdParamsSchema,
          body: AnnotationBodySchema,
          response: { 201: AnnotationsResponseSchema, ...authErrors },
        },
      },
      async (request, reply) => {
        const out = await scans.addAnnotation(ctx.db, {
          viewer: currentUser(request),
          id: request.params.id,
          annotation: request.body,
        });
        return reply.code(201).send(out);
      },
    );

    app.post(
      '/:id/report',
      {
        config: { audit: { action: 'report.create', resource: 'scan' } },
        schema: {
          tags,
          security,
          summary: 'Generate a PDF report; reportUrl is a signed, expiring download link',
          description:
            '201 with a new report; 200 with the latest stored report when it would print the same (same result, review, annotations, patient details, requester and layout): reports are kept as clinical records, and asking again does not store a copy. reportUrl is a relative path (absolute on PUBLIC_URL when set): `/reports/report-<scanId>-<reportId>.pdf?expires=...&signature=...`, fetched without a bearer token until it expires. The documented path `/reports/report-<scanId>.pdf` (the latest report of the scan) and the path without its query also answer a request with a bearer token of someone who may see the scan.',
          params: IdParamsSchema,
          response: { 200: ReportResponseSchema, 201: ReportResponseSchema, ...authErrors },
        },
      },
      async (request, reply) => {
        const out = await generateReport(ctx, {
          viewer: currentUser(request),
          id: request.params.id,
          links: linksFor(ctx, request),
          log: request.log,
        });
        request.log.info({ scan: request.params.id }, out.created ? 'report generated' : 'report unchanged; the stored one returned');
        return reply.code(out.created ? 201 : 200).send(out.body);
      },
    );

    app.delete(
      '/:id',
      {
        config: { audit: { action: 'scan.delete', resource: 'scan' } },
        preHandler: requireAdmin,
        schema: {
          tags,
          security,
          summary: 'Delete a scan with its analyses, reviews, annotations, reports and files (admin)',
          params: IdParamsSchema,
          response: { 200: MessageSchema, ...authErrors },
        },
      },
      async (request) => {
        const { id, patientId } = await scans.deleteScan(ctx.db, {
          viewer: currentUser(request),
          id: request.params.id,
          storage: ctx.storage,
          log: request.log,
        });
        noteAudit(request, { resourceId: id, patientIds: [patientId] });
        request.log.info({ scan: id }, 'scan deleted');
        return { message: 'Scan deleted successfully' };
      },
    );
  };
}


/** Scans. */
export const scansFeature: Feature = { prefix: '/api/scans', routes: scanRoutes };
