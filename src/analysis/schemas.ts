import { Type } from '@sinclair/typebox';
import { Nullable } from '../platform/http/schemas.js';

export const AnalyzeBodySchema = Type.Object(
  { scanId: Type.String({ minLength: 1, maxLength: 64, description: 'The scan _id' }) },
  { additionalProperties: false },
);

export const AnalyzeResponseSchema = Type.Object({
  jobId: Type.String(),
  status: Type.Literal('processing'),
  /** True when an analysis of this scan was already queued and that job is returned. */
  deduplicated: Type.Boolean(),
});

const JobStateSchema = Type.Union(
  [Type.Literal('waiting'), Type.Literal('active'), Type.Literal('completed'), Type.Literal('failed')],
  { description: 'waiting (queued, or waiting to be retried), active, completed or failed' },
);

export const AnalysisStatusSchema = Type.Object({
  status: Type.String({ description: 'The scan status: pending, processing, completed, failed' }),
  progress: Type.Integer({ minimum: 0, maximum: 100, description: '100 once the analysis is completed or failed (a refusal too)' }),
  estimatedCompletionTime: Nullable(Type.String({ description: 'e.g. "30 seconds"; null when not running' })),
  state: Nullable(JobStateSchema),
  stage: Nullable(Type.String({ description: 'The running stage; null while waiting and once completed or failed' })),
});

export const ModelListSchema = Type.Object({
  models: Type.Array(
    Type.Object({
      id: Type.String(),
      name: Type.String(),
      version: Type.String(),
      task: Type.String(),
      labels: Type.Array(Type.String()),
      metrics: Nullable(Type.Record(Type.String(), Type.Unknown())),
      calibration: Type.Union([Type.Literal('model'), Type.Literal('site')], {
        description: '"site": temperature and thresholds from this site\'s own images (npm run calibrate)',
      }),
      temperature: Type.Number(),
      operatingPoint: Type.String({ description: 'The point in use (CHEST_OPERATING_POINT or the manifest default)' }),
      operatingPoints: Type.Array(
        Type.Object({
          name: Type.String(),
          threshold: Nullable(Type.Number()),
          description: Nullable(Type.String()),
          chosenOn: Nullable(Type.String()),
          validation: Nullable(Type.Record(Type.String(), Type.Unknown())),
          external: Nullable(Type.Record(Type.String(), Type.Unknown())),
          site: Nullable(Type.Record(Type.String(), Type.Unknown())),
        }),
      ),
    }),
  ),
});
