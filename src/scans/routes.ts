import multipart from '@fastify/multipart';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { currentUser, requireAdmin } from '../auth/hooks.js';
import type { AppContext } from '../context.js';
import { authErrors, ErrorSchema, IdParamsSchema, MessageSchema } from '../platform/http/schemas.js';
import { SCAN_TYPE_IDS } from '../scan-types/index.js';
import { fileRoutes } from './files.js';
import { generateReport } from './report.js';
import {
  AnnotationBodySchema,
  AnnotationsResponseSchema,
  ListScansQuerySchema,
  ReportResponseSchema,
  ReviewBodySchema,
  ScanDetailSchema,
  ScanListSchema,
  ScanStatusResponseSchema,
  UploadResponseSchema,
} from './schemas.js';
import * as scans from './service.js';
import { readUploadForm } from './upload.js';
import { fileLinks, type FileLinks } from './view.js';

/** The absolute base of links: PUBLIC_URL when set, else the address the client used. */
export function publicBase(ctx: AppContext, request: FastifyRequest): string {
  return ctx.config.publicUrl ?? `${request.protocol}://${request.host}`;
}

export function linksFor(ctx: AppContext, request: FastifyRequest): FileLinks {
  return fileLinks(ctx.signer, publicBase(ctx, request));
}

export function scanRoutes(ctx: AppContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    await app.register(multipart, { throwFileSizeLimit: true });
    app.addHook('onRequest', ctx.authenticate);
    const tags = ['Scans'];
    const security = [{ bearerAuth: [] }];

    app.post(
      '/',
      {
        schema: {
          tags,
          security,
          summary: 'Upload a scan (JPEG, PNG or DICOM Part 10)',
          description: [
            'multipart/form-data with the fields:',
            '- `image` (file, required): JPEG, PNG or DICOM Part 10; the type is read from the bytes, never from the file name or Content-Type.',
            "- `patientId`: the patient's hospital identifier; from the DICOM header when absent. An unknown patientId creates the patient, assigned to you.",
            '- `patientName`: required to create a patient; from the DICOM header when absent.',
            '- `scanDate` (optional, ISO 8601): from the DICOM StudyDate when absent, else now.',
            `- \`scanType\` (optional, ${SCAN_TYPE_IDS.map((t) => `\`${t}\``).join(' or ')}): which analysis applies; inferred from DICOM Modality and BodyPartExamined when absent. With a scan type the scan is queued for analysis (\`processing\`), else it is \`pending\`.`,
            '',
            `Over MAX_UPLOAD_MB: 413. Not JPEG, PNG or DICOM: 415. Corrupt or truncated: 400. A DICOM encoding that cannot be decoded: 422.`,
          ].join('\n'),
          consumes: ['multipart/form-data'],
          response: { 201: UploadResponseSchema, ...authErrors, 413: ErrorSchema, 415: ErrorSchema, 422: ErrorSchema },
        },
      },
      async (request, reply) => {
        const viewer = currentUser(request);
        const form = await readUploadForm(request, ctx.config.maxUploadMb);
        const scan = await scans.uploadScan(ctx, { viewer, form, links: linksFor(ctx, request), log: request.log });
        request.log.info({ scan: scan._id, status: scan.status }, 'scan uploaded');
        return reply.code(201).send(scan);
      },
    );

    app.get(
      '/',
      {
        schema: {
          tags,
          security,
          summary: 'List the scans you may see, newest scan date first',
          querystring: ListScansQuerySchema,
          response: { 200: ScanListSchema, ...authErrors },
        },
      },
      async (request) =>
        scans.listScans(ctx.db, { viewer: currentUser(request), query: request.query, links: linksFor(ctx, request) }),
    );

    app.get(
      '/:id',
      {
        schema: {
          tags,
          security,
          summary: 'A scan with its result, the model output, the review and annotations',
          params: IdParamsSchema,
          response: { 200: ScanDetailSchema, ...authErrors },
        },
      },
      async (request) =>
        scans.getScan(ctx.db, { viewer: currentUser(request), id: request.params.id, links: linksFor(ctx, request) }),
    );

    app.get(
      '/:id/status',
      {
        schema: {
          tags,
          security,
          summary: "The scan's status and the progress of its analysis job",
          params: IdParamsSchema,
          response: { 200: ScanStatusResponseSchema, ...authErrors },
        },
      },
      async (request) => scans.scanStatus(ctx, { viewer: currentUser(request), id: request.params.id }),
    );

    app.patch(
      '/:id',
      {
        schema: {
          tags,
          security,
          summary: "A physician's review: stored beside the model output, which is never overwritten",
          params: IdParamsSchema,
          body: ReviewBodySchema,
          response: { 200: ScanDetailSchema, ...authErrors },
        },
      },
      async (request) => {
        const scan = await scans.reviewScan(ctx.db, {
          viewer: currentUser(request),
          id: request.params.id,
          body: request.body,
          links: linksFor(ctx, request),
        });
        request.log.info({ scan: scan._id, status: scan.status }, 'scan reviewed');
        return scan;
      },
    );

    app.post(
      '/:id/annotations',
      {
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
        schema: {
          tags,
          security,
          summary: 'Generate a PDF report; reportUrl is a signed, expiring download link',
          params: IdParamsSchema,
          response: { 201: ReportResponseSchema, ...authErrors },
        },
      },
      async (request, reply) => {
        const out = await generateReport(ctx, {
          viewer: currentUser(request),
          id: request.params.id,
          links: linksFor(ctx, request),
          log: request.log,
        });
        request.log.info({ scan: request.params.id }, 'report generated');
        return reply.code(201).send(out);
      },
    );

    app.delete(
      '/:id',
      {
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
        const id = await scans.deleteScan(ctx.db, { viewer: currentUser(request), id: request.params.id });
        await ctx.removeScanFiles([id], request.log);
        request.log.info({ scan: id }, 'scan deleted');
        return { message: 'Scan deleted successfully' };
      },
    );
  };
}

/** The scans feature: the API under /api/scans and the signed file links. */
export async function scansFeature(app: FastifyInstance, ctx: AppContext): Promise<void> {
  await app.register(scanRoutes(ctx), { prefix: '/api/scans' });
  await app.register(fileRoutes(ctx));
}
