/**
 * The analysis job: decode -> preprocess -> inference -> explanation -> saving. Each stage
 * writes its progress to the analysis row, which the status endpoints read. Safe to run twice:
 * an analysis that already finished is skipped, and the final write is one transaction.
 */
import type { Db } from '../platform/db/index.js';
import type { HotRegion, ScanType } from '../platform/db/schema.js';
import { PermanentJobError, type JobDefinition } from '../platform/queue/index.js';
import type { Storage } from '../platform/storage/index.js';
import type { EventPublisher } from '../webhooks/types.js';
import { ANALYZE_SCAN_JOB } from './job-name.js';
import { failAnalysis } from './outcome.js';
import * as repo from './repository.js';

export type AnalysisStage = 'decode' | 'preprocess' | 'inference' | 'explanation' | 'saving';

export const STAGE_PROGRESS: Record<AnalysisStage, number> = {
  decode: 10,
  preprocess: 25,
  inference: 50,
  explanation: 75,
  saving: 90,
};

export type AnalyzerOutput =
  | {
      refused: false;
      model: { id: string; version: string };
      /** The model's output: hasTumor/tumorType or hasPneumonia/pneumoniaType, confidence, probabilities... */
      result: Record<string, unknown>;
      heatmapPng: Buffer;
      hotRegion: HotRegion;
    }
  | { refused: true; reason: string; model: { id: string; version: string } | null };

/** The ML side as the job sees it (implemented over src/ml in analyzer.ts). */
export interface Analyzer {
  analyze(
    scanType: ScanType,
    displayPng: Buffer,
    onStage: (stage: AnalysisStage) => Promise<void>,
  ): Promise<AnalyzerOutput>;
}

export interface AnalyzeScanPayload {
  scanId: string;
  analysisId: string;
}

export interface AnalyzeJobDeps {
  db: Db;
  storage: Storage;
  analyzer: Analyzer;
  events: EventPublisher;
  /** Seconds before an active job whose worker died is retried. */
  expireInSeconds?: number;
}

const RETRY_LIMIT = 3;

export function analyzeScanJob(deps: AnalyzeJobDeps): JobDefinition<AnalyzeScanPayload> {
  const { db, storage, analyzer, events } = deps;

  const fail = (analysisId: string, scanId: string, patientId: string, reason: string, refused: boolean) =>
    failAnalysis(db, events, { analysisId, scanId, patientId, reason, refused });

  return {
    name: ANALYZE_SCAN_JOB,
    retryLimit: RETRY_LIMIT,
    retryDelaySeconds: 5,
    retryBackoff: true,
    expireInSeconds: deps.expireInSeconds ?? 120,
    parse(data) {
      const d = data as Partial<AnalyzeScanPayload>;
      if (typeof d?.scanId !== 'string' || typeof d.analysisId !== 'string') throw new Error('scanId and analysisId required');
      return { scanId: d.scanId, analysisId: d.analysisId };
    },
    async handler({ scanId, analysisId }, { attempt, log }) {
      const analysis = await repo.findAnalysis(db, analysisId);
      const scan = await repo.findScanForAnalysis(db, scanId);
      if (!analysis || !scan) {
        log.info('scan or analysis deleted before it ran; nothing to do');
        return;
      }
      if (analysis.status === 'completed' || analysis.status === 'failed') {
        log.info({ status: analysis.status }, 'analysis already finished; skipping');
        return;
      }
      const started = Date.now();
      const setStage = async (stage: AnalysisStage) => {
        await repo.updateAnalysis(db, analysisId, { stage, progress: STAGE_PROGRESS[stage] });
      };
      await repo.updateAnalysis(db, analysisId, { status: 'active', startedAt: new Date(), stage: 'decode', progress: 5 });

      let output: AnalyzerOutput;
      try {
        await setStage('decode');
        const png = await storage.get(scan.imageKey);
        output = await analyzer.analyze(analysis.scanType, png, setStage);
      } catch (err) {
        if (err instanceof PermanentJobError) {
          await fail(analysisId, scanId, scan.patientId, err.message, false);
          throw err;
        }
        // Transient (storage hiccup, runtime error): retry with backoff; on the last try, fail
        // the scan so it never stays "processing".
        if (attempt > RETRY_LIMIT) {
          await fail(analysisId, scanId, scan.patientId, 'Analysis failed after several attempts; try again later', false);
          throw new PermanentJobError('analysis failed after all retries');
        }
        throw err;
      }

      if (output.refused) {
        await fail(analysisId, scanId, scan.patientId, output.reason, true);
        throw new PermanentJobError(output.reason);
      }

      await setStage('saving');
      const heatmapKey = `scans/${scanId}/heatmap-${analysisId}.png`;
      await storage.put(heatmapKey, output.heatmapPng, 'image/png');
      await db.transaction(async (tx) => {
        await repo.updateAnalysis(tx, analysisId, {
          status: 'completed',
          stage: 'saving',
          progress: 100,
          modelId: output.model.id,
          modelVersion: output.model.version,
          result: output.result,
          heatmapKey,
          hotRegion: output.hotRegion,
          durationMs: Date.now() - started,
          completedAt: new Date(),
        });
        await repo.updateScan(tx, scanId, { status: 'completed', currentAnalysisId: analysisId, failureReason: null });
        await events.publish(tx, { type: 'scan.analyzed', scanId, patientId: scan.patientId, status: 'completed' });
      });
      log.info({ scanId, model: output.model.id, ms: Date.now() - started }, 'analysis completed');
    },
  };
}
