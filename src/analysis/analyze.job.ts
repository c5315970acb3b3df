/**
 * The analysis job: decode -> preprocess -> inference -> explanation -> saving. The claim shows
 * the first stage and each later stage that lasts long enough to be seen is written to the
 * analysis row (progress.ts), which the status endpoints read. Safe to run twice:
 * an analysis that already finished is skipped, and the final write (result, scan status,
 * webhook deliveries) commits at once: one statement when no webhook receives the event.
 */
import { Type } from '@sinclair/typebox';
import type { Db } from '../platform/db/index.js';
import type { HeatmapMap, HotRegion } from '../platform/db/schema.js';
import type { Finding, ScanType } from '../scan-types/index.js';
import { PermanentJobError, type JobDefinition } from '../platform/queue/index.js';
import type { Metrics } from '../platform/metrics/index.js';
import type { EventPublisher } from '../webhooks/types.js';
import { ImageDecodeError, undecodableImage } from '../imaging/errors.js';
import type { ScanImage, ScanRenditions } from '../scans/renditions.js';
import { heatmapKey } from '../scans/stored-files.js';
import { ANALYZE_SCAN_JOB } from './job-name.js';
import { endAnalysis, failAnalysis } from './outcome.js';
import { throttledProgress } from './progress.js';
import * as repo from './repository.js';

export type AnalysisStage = 'decode' | 'preprocess' | 'inference' | 'explanation' | 'saving';

const STAGE_PROGRESS: Record<AnalysisStage, number> = {
  decode: 10,
  preprocess: 25,
  inference: 50,
  explanation: 75,
  saving: 90,
};

export type AnalyzerOutput =
  | {
      refused: false;
      /** The type it was analysed as, when the analyzer settled it (no declared type). */
      scanType?: ScanType;
      model: { id: string; version: string };
      /** The model's finding, in its scan type's shape (src/scan-types). */
      result: Finding;
      /** The explained class's map: the heatmap PNG is drawn from it on its first read (src/scans/heatmaps.ts). */
      heatmapMap: HeatmapMap;
      hotRegion: HotRegion;
    }
  | {
      refused: true;
      reason: string;
      model: { id: string; version: string } | null;
      /** The type it was tried as; null when it could not be settled (neither type, or a DICOM header refusal). */
      scanType?: ScanType | null;
    };

/** What the analyzer knows of the scan besides its pixels. */
interface AnalyzeContext {
  /** The DICOM attributes stored with the scan (Modality, Body Part Examined...), when it came as DICOM. */
  dicom?: Record<string, unknown> | null;
}

/** The ML side as the job sees it (implemented over src/ml in analyzer.ts). */
export interface Analyzer {
  /**
   * scanType null: decide it from the DICOM header or the image (src/ml/routing.ts). The image
   * is the display PNG, a render's pixels this worker just made, or a JPEG or PNG original, whose
   * pixels the analyzer decodes.
   */
  analyze(
    scanType: ScanType | null,
    image: ScanImage,
    onStage: (stage: AnalysisStage) => Promise<void>,
    context?: AnalyzeContext,
  ): Promise<AnalyzerOutput>;
}

export const AnalyzeScanPayloadSchema = Type.Object({ scanId: Type.String(), analysisId: Type.String() });

export interface AnalyzeJobDeps {
  db: Db;
  analyzer: Analyzer;
  /** The scan's display image, rendered from its original when the upload stored none. */
  renditions: ScanRenditions;
  events: EventPublisher;
  /** Analysis duration by model and outcome, refusals by scan type. */
  metrics?: Pick<Metrics, 'analysisDuration' | 'analysisRefusals'>;
  /** Seconds before an active job whose worker died is retried. */
  expireInSeconds?: number;
}

const RETRY_LIMIT = 3;

/**
 * The display image; a file that cannot be decoded fails its analysis for good, saying why. A
 * render that ran out of time (a busy machine) is an ordinary failure: the job is tried again.
 */
async function displayImage(renditions: ScanRenditions, scan: Parameters<ScanRenditions['read']>[0]): Promise<ScanImage> {
  try {
    return await renditions.readForAnalysis(scan);
  } catch (err) {
    if (err instanceof ImageDecodeError) {
      const failure = undecodableImage(err);
      if (failure.permanent) throw new PermanentJobError(failure.message);
    }
    throw err;
  }
}

export function analyzeScanJob(deps: AnalyzeJobDeps): JobDefinition<typeof AnalyzeScanPayloadSchema> {
  const { db, analyzer, events, renditions } = deps;

  return {
    name: ANALYZE_SCAN_JOB,
    retryLimit: RETRY_LIMIT,
    retryDelaySeconds: 5,
    retryBackoff: true,
    expireInSeconds: deps.expireInSeconds ?? 120,
    payload: AnalyzeScanPayloadSchema,
    async handler({ scanId, analysisId }, { attempt, log, enqueuedAt, completion }) {
      const handlerStart = Date.now();
      // Every write below names this try: if the job expired while this worker stalled and a
      // retry took over, whatever this try still writes is ignored.
      const claimed = await repo.claimAnalysis(db, analysisId, attempt, STAGE_PROGRESS.decode);
      if (!claimed) {
        log.info('analysis already finished, or deleted with its scan; skipping');
        return;
      }
      const started = Date.now();
      // When each stage began, for the one log line per analysis (ids and timings, no patient data).
      const marks: Partial<Record<AnalysisStage | 'loaded' | 'saved', number>> = {};
      const progress = throttledProgress((stage: AnalysisStage) => repo.reportProgress(db, analysisId, attempt, stage, STAGE_PROGRESS[stage]));
      const setStage = (stage: AnalysisStage) => {
        marks[stage] ??= Date.now();
        progress.report(stage);
        return Promise.resolve();
      };
      const span = (from: keyof typeof marks, to: keyof typeof marks) =>
        marks[from] !== undefined && marks[to] !== undefined ? marks[to] - marks[from] : undefined;
      const finished = (
        outcome: 'completed' | 'refused' | 'failed',
        model: { id: string; version: string } | null,
        routedType?: string | null,
      ) => {
        const end = Date.now();
        const scanType = claimed.scanType ?? routedType ?? 'unrouted';
        deps.metrics?.analysisDuration.observe({ model: model?.id ?? 'none', outcome }, (end - started) / 1000);
        if (outcome === 'refused') deps.metrics?.analysisRefusals.inc({ scan_type: scanType });
        log.info(
          {
            scanId,
            analysisId,
            attempt,
            scanType,
            model: model ? `${model.id}@${model.version}` : null,
            outcome,
            timings: {
              queuedMs: enqueuedAt && attempt === 1 ? handlerStart - enqueuedAt.getTime() : undefined,
              claimMs: started - handlerStart,
              loadMs: span('decode', 'loaded'),
              decodeMs: span('loaded', 'preprocess'),
              preprocessMs: span('preprocess', 'inference'),
              inferenceMs: span('inference', 'explanation'),
              explanationMs: span('explanation', 'saving'),
              saveMs: marks.saving !== undefined ? end - marks.saving : undefined,
              totalMs: end - started,
            },
          },
          'analysis finished',
        );
      };
      const fail = async (reason: string, refused: boolean) => {
        await failAnalysis(db, events, { analysisId, scanId, patientId: claimed.patientId, reason, refused, attempt, job: completion });
        if (!refused) finished('failed', null);
      };

      try {
        // The claim above already shows `decode`.
        marks.decode = started;
        const image = await displayImage(renditions, claimed);
        marks.loaded = Date.now();
        const output = await analyzer.analyze(claimed.scanType, image, setStage, { dicom: claimed.dicom });
        if (output.refused) {
          await progress.settle();
          await failAnalysis(db, events, {
            analysisId,
            scanId,
            patientId: claimed.patientId,
            reason: output.reason,
            refused: true,
            attempt,
            job: completion,
            // A declared type stays; a routed one is only kept when the model accepted it.
            ...(claimed.scanType === null && output.scanType ? { scanType: output.scanType } : {}),
          });
          finished('refused', output.model, output.scanType);
          return;
        }

        void setStage('saving');
        await progress.settle();
        const saved = await endAnalysis(
          db,
          events,
          {
            analysisId,
            attempt,
            job: completion,
            analysis: {
              status: 'completed',
              stage: 'saving',
              progress: 100,
              ...(claimed.scanType === null && output.scanType ? { scanType: output.scanType } : {}),
              modelId: output.model.id,
              modelVersion: output.model.version,
              result: output.result,
              // Where the heatmap is stored once it is first read (rendered from the map then).
              heatmapKey: heatmapKey(scanId, analysisId),
              heatmapMap: output.heatmapMap,
              hotRegion: output.hotRegion,
              durationMs: Date.now() - started,
              completedAt: new Date(),
            },
            scanId,
            scan: {
              status: 'completed',
              currentAnalysisId: analysisId,
              failureReason: null,
              ...(output.scanType ? { scanType: output.scanType } : {}),
            },
          },
          { type: 'scan.analyzed', scanId, patientId: claimed.patientId, status: 'completed' },
        );
        if (saved) finished('completed', output.model, output.scanType);
        else log.warn('a later try of this job owns the analysis; this result was discarded');
      } catch (err) {
        await progress.settle();
        // Undecodable image, model not installed: a retry would fail the same way.
        if (err instanceof PermanentJobError) {
          await fail(err.message, false);
          throw err;
        }
        // Transient (storage hiccup, database, runtime error): retry with backoff; on the last
        // try, fail the scan so it never stays "processing".
        if (attempt > RETRY_LIMIT) {
          await fail('Analysis failed after several attempts; try again later', false);
          throw new PermanentJobError('analysis failed after all retries');
        }
        throw err;
      }
    },
  };
}
