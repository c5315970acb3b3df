/**
 * The composition root: every adapter (storage, image decoder, metrics, Redis, queue, ONNX
 * analyzer) is built here, once, and handed down. server.ts, worker.ts, the tests and the
 * benchmarks all build through createRuntime, so they run the same wiring; scripts that only
 * need the routes (the OpenAPI document) build a context alone with createContext.
 */
import path from 'node:path';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { analyzeScanJob, type Analyzer } from './analysis/analyze.job.js';
import { createOnnxAnalyzer, type OnnxAnalyzer } from './analysis/analyzer.js';
import { calibrationNotices } from './analysis/models.js';
import { ANALYZE_SCAN_JOB } from './analysis/job-name.js';
import { createAnalysisQueue } from './analysis/queue.js';
import { startReconciler } from './analysis/reconciler.js';
import type { AnalysisQueue } from './analysis/types.js';
import { createAuditLog } from './audit/log.js';
import { createAuthHook, type CachedUser } from './auth/hooks.js';
import { createLoginThrottle } from './auth/throttle.js';
import { createTokenService } from './auth/tokens.js';
import { createUserCache } from './auth/user-cache.js';
import type { AppContext } from './context.js';
import { createImageDecoder, type ImageDecoder } from './imaging/decoder.js';
import { createScanRenditions, type ScanRenditions } from './scans/renditions.js';
import { createScanHeatmaps } from './scans/heatmaps.js';
import { SWEEP_ORPHAN_FILES_JOB, sweepOrphanFilesJob } from './scans/sweep-orphan-files.job.js';
import { SWEEP_PARTIAL_UPLOADS_JOB, sweepPartialUploadsJob } from './scans/sweep-partial-uploads.job.js';
import { scheduleSweeps } from './scans/sweeps.js';
import { SCAN_FILE_FOLDERS } from './scans/stored-files.js';
import type { Config } from './platform/config.js';
import type { Database } from './platform/db/index.js';
import { createMetrics, pgBossQueueStats, type Metrics } from './platform/metrics/index.js';
import { openQueue, type Queue } from './platform/queue/index.js';
import { createUrlSigner } from './platform/signing.js';
import { createLocalStorage, createS3Storage, type Storage } from './platform/storage/index.js';
import { withDatabaseOriginals } from './scans/originals.js';
import { WEBHOOK_DELIVERY_JOB, webhookDeliveryJob } from './webhooks/deliver.job.js';
import { createEventPublisher } from './webhooks/publisher.js';
import type { EventPublisher } from './webhooks/types.js';

/** Every job this application queues: start-up fails if one has no handler, or two. */
export const JOB_NAMES = [ANALYZE_SCAN_JOB, WEBHOOK_DELIVERY_JOB, SWEEP_PARTIAL_UPLOADS_JOB, SWEEP_ORPHAN_FILES_JOB] as const;

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

/** The adapters a context is made of, each built once by the caller. */
export interface ContextAdapters {
  storage: Storage;
  imaging: ImageDecoder;
  metrics: Metrics;
  analysis: AnalysisQueue;
  events: EventPublisher;
  redis: Redis | null;
  /** The one renditions instance of the process: the analysis job's, and the routes'. */
  renditions: ScanRenditions;
}

/** What the routes share, from the configuration and adapters built by the caller. */
export function createContext(config: Config, database: Database, adapters: ContextAdapters): AppContext {
  const tokens = createTokenService(config.jwtSecret, config.jwtExpiresIn);
  const userCache = createUserCache<CachedUser>(database);
  return {
    ...adapters,
    config,
    database,
    db: database.db,
    signer: createUrlSigner(config.urlSigningSecret, config.signedUrlTtlSeconds),
    tokens,
    authenticate: createAuthHook(database.db, tokens, userCache),
    userCache,
    loginThrottle: createLoginThrottle(database.db, config.loginThrottle),
    audit: createAuditLog(database.db),
    heatmaps: createScanHeatmaps({
      db: database.db,
      storage: adapters.storage,
      renditions: adapters.renditions,
      imaging: adapters.imaging,
      maxPixels: config.maxImagePixels,
    }),
  };
}

export async function createRuntime(config: Config, database: Database, opts: RuntimeOptions): Promise<Runtime> {
  const { log } = opts;
  // Small uploads' originals kept in the database (src/scans/originals.ts) read as files.
  const storage = withDatabaseOriginals(
    opts.storage ?? (config.storage ? createS3Storage(config.storage) : createLocalStorage(path.join(config.dataDir, 'files'))),
    database.db,
  );
  // The 256 shard folders at start (a few ms), not one mkdir in each of the first uploads.
  await storage.prepareFolders(SCAN_FILE_FOLDERS);
  const metrics = createMetrics({
    queueStats: pgBossQueueStats(database.executor),
    defaultMetrics: Boolean(config.metrics.token),
  });
  const queue = await openQueue(database, {
    log,
    supervise: opts.supervise ?? true,
    maintenanceIntervalSeconds: opts.maintenanceIntervalSeconds ?? config.worker.maintenanceSeconds,
  });
  const deliveryJob = webhookDeliveryJob({
    metrics,
    db: database.db,
    timeoutMs: config.webhooks.timeoutMs,
    maxAttempts: config.webhooks.maxAttempts,
    allowPrivate: config.webhooks.allowPrivate,
  });
  const events = createEventPublisher({ queue, deliveryJob });
  // The analyzer (ONNX sessions) loads lazily, when this process starts working jobs or on the
  // first analysis: API-only processes never pay for it.
  let onnx: OnnxAnalyzer | null = null;
  const operatingPoints: Record<string, string> = config.chestOperatingPoint ? { 'chest-xray': config.chestOperatingPoint } : {};
  // Said once at start, by the API and the worker alike: a site calibration not used, a point
  // no calibration has. (A manifest that cannot be read fails its analyses, not the start.)
  try {
    for (const n of await calibrationNotices(config.modelsDir, { calibrationDir: config.calibrationDir, operatingPoints })) {
      log[n.level]({ model: n.model }, n.message);
    }
  } catch (err) {
    log.error({ err: err instanceof Error ? err.message : String(err) }, 'model calibrations not checked');
  }
  const onnxAnalyzer = () =>
    (onnx ??= createOnnxAnalyzer({
      modelsDir: config.modelsDir,
      calibrationDir: config.calibrationDir,
      operatingPoints,
      threads: config.worker.concurrency,
      maxPixels: config.maxImagePixels,
    }));
  const lazyAnalyzer: Analyzer = opts.analyzer ?? {
    analyze: (scanType, image, onStage, context) => onnxAnalyzer().analyze(scanType, image, onStage, context),
  };
  const imaging = createImageDecoder({
    timeoutMs: config.decodeTimeoutMs,
    // The decoder's own words only, never the file: a bug report without patient data.
    onInternalError: (message) => log.error({ decoderError: message }, 'image decoder failed unexpectedly'),
  });
  // Built before the context (the analysis queue needs the job) and handed to it: the job and
  // the routes share one instance, so a render in flight for one is joined by the other.
  const renditions = createScanRenditions({ storage, imaging, maxPixels: config.maxImagePixels });
  const analyzeJob = analyzeScanJob({
    db: database.db,
    analyzer: lazyAnalyzer,
    renditions,
    events,
    metrics,
    expireInSeconds: opts.analysisExpireInSeconds ?? config.worker.analysisTimeoutSeconds,
  });
  // Processes started together take turns at creating the queues (pg-boss makes a table
  // partition per queue: DDL that deadlocks when two processes run it at once).
  const sweepJob = sweepPartialUploadsJob({ storage, ageMinutes: config.partialUploads.ageMinutes });
  const orphanSweepJob = sweepOrphanFilesJob({ db: database.db, storage, ageHours: config.orphanFiles.ageHours });
  await database.withStartupLock(() => queue.register(JOB_NAMES, [analyzeJob, deliveryJob, sweepJob, orphanSweepJob]));
  const analysis = createAnalysisQueue(database.db, queue, analyzeJob);
  // Rate-limit counters shared by every API process (REDIS_URL); without it, per process.
  const redis = config.redisUrl ? new Redis(config.redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false }) : null;
  redis?.on('error', (err: Error) => log.warn({ err: err.message }, 'redis unavailable for rate limits'));
  const ctx = createContext(config, database, { storage, imaging, metrics, analysis, events, redis, renditions });
  let stopReconciler: (() => void) | null = null;
  let stopSweeps: (() => void)[] = [];
  await ctx.userCache.start();

  return {
    ctx,
    queue,
    async startWorkers() {
      // Every analyzer thread loads its models before the first job is taken: otherwise the
      // first analyses of a fresh worker (often a burst's) wait for them and share the CPU with
      // them. A model that cannot be loaded fails its analyses, as before, not the start-up.
      if (!opts.analyzer) {
        await onnxAnalyzer()
          .warmUp()
          .catch((err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err) }, 'models not loaded ahead of the first analysis'));
      }
      // While the queue is busy, a job in hand per analyzer thread beside the one it analyses:
      // the next one's fetch, claim and image read (and the previous one's end
      // and completion) happen on this loop meanwhile, so a thread never waits on the database
      // between analyses (with one job per thread, each thread idled ~55% of a burst:
      // pipeline.md). An idle queue wakes only one worker per thread, as before.
      await queue.work(ANALYZE_SCAN_JOB, {
        concurrency: config.worker.concurrency,
        ahead: config.worker.concurrency,
        pollIntervalSeconds: config.worker.pollIntervalSeconds,
        log,
      });
      await queue.work(WEBHOOK_DELIVERY_JOB, { concurrency: 2, pollIntervalSeconds: config.worker.pollIntervalSeconds, log });
      stopReconciler = startReconciler({ db: database.db, queue, events, log });
      // An hourly job needs no fast polling: a sweep asked for is taken within half a minute.
      await queue.work(SWEEP_PARTIAL_UPLOADS_JOB, { concurrency: 1, pollIntervalSeconds: 30, log });
      await queue.work(SWEEP_ORPHAN_FILES_JOB, { concurrency: 1, pollIntervalSeconds: 30, log });
      stopSweeps = [
        scheduleSweeps({ queue, job: sweepJob, intervalMinutes: config.partialUploads.intervalMinutes, log }),
        scheduleSweeps({ queue, job: orphanSweepJob, intervalMinutes: config.orphanFiles.intervalHours * 60, log }),
      ];
    },
    async stop() {
      for (const stop of stopSweeps) stop();
      stopReconciler?.();
      await ctx.userCache.stop();
      await queue.stop();
      await onnx?.close();
      await imaging.close();
      redis?.disconnect();
    },
  };
}
