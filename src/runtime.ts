/**
 * Wires a process together: storage, queue, jobs, the analysis queue and the event publisher,
 * and (when this process works jobs) the workers and the reconciler. server.ts, worker.ts and
 * the tests all build through here, so they run the same wiring.
 */
import type { Logger } from 'pino';
import { analyzeScanJob, type Analyzer } from './analysis/analyze.job.js';
import { createOnnxAnalyzer, type OnnxAnalyzer } from './analysis/analyzer.js';
import { createAnalysisQueue } from './analysis/queue.js';
import { startReconciler } from './analysis/reconciler.js';
import { createContext, type AppContext } from './context.js';
import { createImageDecoder } from './imaging/decoder.js';
import type { Config } from './platform/config.js';
import type { Database } from './platform/db/index.js';
import { startQueue, type JobDefinition, type Queue } from './platform/queue/index.js';
import { createLocalStorage, createS3Storage, type Storage } from './platform/storage/index.js';
import { webhookDeliveryJob } from './webhooks/deliver.job.js';
import { createEventPublisher } from './webhooks/publisher.js';
import { createMetrics, pgBossQueueStats } from './platform/metrics/index.js';
import path from 'node:path';

export interface Runtime {
  ctx: AppContext;
  queue: Queue;
  /** Starts working jobs in this process (API with in-process worker, or worker.ts). */
  startWorkers(): Promise<void>;
  stop(): Promise<void>;
}

export interface RuntimeOptions {
  log: Logger;
  /** Replaces the ONNX analyzer (never in production; tests of failure paths). */
  analyzer?: Analyzer;
  storage?: Storage;
  /** pg-boss maintenance (expiry of jobs whose worker died); on in every long-running process. */
  supervise?: boolean;
  /** Seconds before an active analysis whose worker vanished is retried. */
  analysisExpireInSeconds?: number;
  maintenanceIntervalSeconds?: number;
}

export async function createRuntime(config: Config, database: Database, opts: RuntimeOptions): Promise<Runtime> {
  const { log } = opts;
  const storage =
    opts.storage ?? (config.storage ? createS3Storage(config.storage) : createLocalStorage(path.join(config.dataDir, 'files')));
  let queue: Queue | null = null;
  const getQueue = () => {
    if (!queue) throw new Error('queue not started');
    return queue;
  };
  const metrics = createMetrics({
    queueStats: pgBossQueueStats(database.executor),
    defaultMetrics: Boolean(config.metrics.token),
  });
  const deliveryJob = webhookDeliveryJob({
    metrics,
    db: database.db,
    timeoutMs: config.webhooks.timeoutMs,
    maxAttempts: config.webhooks.maxAttempts,
    allowPrivate: config.webhooks.allowPrivate,
  });
  const events = createEventPublisher({ getQueue, deliveryJob });
  // The analyzer (ONNX sessions) loads lazily, on the first analysis: API-only processes
  // never pay for it.
  let onnx: OnnxAnalyzer | null = null;
  const lazyAnalyzer: Analyzer = opts.analyzer ?? {
    analyze(scanType, png, onStage, context) {
      onnx ??= createOnnxAnalyzer({
        modelsDir: config.modelsDir,
        calibrationDir: config.calibrationDir,
        operatingPoints: config.chestOperatingPoint ? { 'chest-xray': config.chestOperatingPoint } : {},
        threads: config.worker.concurrency,
        maxPixels: config.maxImagePixels,
      });
      return onnx.analyze(scanType, png, onStage, context);
    },
  };
  const analyzeJob = analyzeScanJob({
    db: database.db,
    storage,
    analyzer: lazyAnalyzer,
    events,
    metrics,
    expireInSeconds: opts.analysisExpireInSeconds ?? config.worker.analysisTimeoutSeconds,
  });
  const jobs = [analyzeJob, deliveryJob] as unknown as JobDefinition<object>[];
  queue = await startQueue(database, jobs, {
    log,
    supervise: opts.supervise ?? true,
    maintenanceIntervalSeconds: opts.maintenanceIntervalSeconds ?? config.worker.maintenanceSeconds,
  });
  const analysis = createAnalysisQueue(database.db, queue, analyzeJob);
  const imaging = createImageDecoder({
    timeoutMs: config.decodeTimeoutMs,
    // The decoder's own words only, never the file: a bug report without patient data.
    onInternalError: (message) => log.error({ decoderError: message }, 'image decoder failed unexpectedly'),
  });
  const ctx = createContext(config, database, { analysis, events }, { storage, imaging, metrics });
  let stopReconciler: (() => void) | null = null;
  await ctx.userCache.start();

  return {
    ctx,
    queue,
    async startWorkers() {
      await getQueue().work([analyzeJob as unknown as JobDefinition<object>], {
        concurrency: config.worker.concurrency,
        pollIntervalSeconds: config.worker.pollIntervalSeconds,
        log,
      });
      await getQueue().work([deliveryJob as unknown as JobDefinition<object>], {
        concurrency: 2,
        pollIntervalSeconds: config.worker.pollIntervalSeconds,
        log,
      });
      stopReconciler = startReconciler({ db: database.db, queue: getQueue(), events, log });
    },
    async stop() {
      stopReconciler?.();
      await ctx.userCache.stop();
      await getQueue().stop();
      await onnx?.close();
      await ctx.imaging.close();
    },
  };
}
