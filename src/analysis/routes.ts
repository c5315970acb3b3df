import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { currentUser } from '../auth/hooks.js';
import type { AppContext, Feature } from '../context.js';
import { listModelSummaries } from './models.js';
import { authErrors, ErrorSchema } from '../platform/http/schemas.js';
import { SCAN_TYPE_IDS, scanTypeSpec } from '../scan-types/index.js';
import { AnalysisStatusSchema, AnalyzeBodySchema, AnalyzeResponseSchema, ModelListSchema } from './schemas.js';
import { analysisStatus, requestAnalysis } from './service.js';

/** The ML Analysis section of the API: /api/ml/... */
function mlRoutes(ctx: AppContext): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.addHook('onRequest', ctx.authenticate);
    const tags = ['ML Analysis'];
    const security = [{ bearerAuth: [] }];

    for (const scanType of SCAN_TYPE_IDS) {
      app.post(
        scanTypeSpec(scanType).analyzeRoute,
        {
          config: { audit: { action: 'analysis.request', resource: 'scan' } },
          schema: {
            tags,
            security,
            summary: `Queue a ${scanType} analysis of a scan (returns the queued job when one is already waiting)`,
            body: AnalyzeBodySchema,
            response: { 200: AnalyzeResponseSchema, ...authErrors, 409: ErrorSchema },
          },
        },
        async (request, reply) => {
          const out = await requestAnalysis(ctx, { viewer: currentUser(request), scanId: request.body.scanId, scanType });
          request.log.info({ scanId: request.body.scanId, jobId: out.jobId, deduplicated: out.deduplicated }, 'analysis requested');
          return reply.code(200).send(out);
        },
      );
    }

    app.get(
      '/status/:scanId',
      {
        config: { audit: { action: 'analysis.read_status', resource: 'scan' } },
        schema: {
          tags,
          security,
          summary: 'Progress of the latest analysis of a scan, with an estimated completion time',
          params: Type.Object({ scanId: Type.String({ minLength: 1, maxLength: 64 }) }),
          response: { 200: AnalysisStatusSchema, ...authErrors },
        },
      },
      async (request) =>
        analysisStatus(ctx, {
          viewer: currentUser(request),
          scanId: request.params.scanId,
          concurrency: ctx.config.worker.concurrency,
        }),
    );

    app.get(
      '/models',
      {
        schema: {
          tags,
          security,
          summary: 'The installed models with their labels and test metrics',
          response: { 200: ModelListSchema, 401: ErrorSchema, 429: ErrorSchema, 503: ErrorSchema },
        },
      },
      async () => ({
        models: await listModelSummaries(ctx.config.modelsDir, {
          calibrationDir: ctx.config.calibrationDir,
          operatingPoints: ctx.config.chestOperatingPoint ? { 'chest-xray': ctx.config.chestOperatingPoint } : {},
        }),
      }),
    );
  };
}

/** The ML Analysis section. */
export const analysisFeature: Feature = { prefix: '/api/ml', routes: mlRoutes };
