/**
 * What the feature plugins share: configuration and the I/O adapters, built once by the
 * composition root (src/runtime.ts) and passed down explicitly; and the shape of a feature.
 */
import type { FastifyPluginAsync, onRequestHookHandler } from 'fastify';
import type { Redis } from 'ioredis';
import type { AnalysisQueue } from './analysis/types.js';
import type { AuditLog } from './audit/log.js';
import type { CachedUser } from './auth/hooks.js';
import type { LoginThrottle } from './auth/throttle.js';
import type { TokenService } from './auth/tokens.js';
import type { UserCache } from './auth/user-cache.js';
import type { ImageDecoder } from './imaging/decoder.js';
import type { Config } from './platform/config.js';
import type { Database, Db } from './platform/db/index.js';
import type { Metrics } from './platform/metrics/index.js';
import type { UrlSigner } from './platform/signing.js';
import type { Storage } from './platform/storage/index.js';
import type { ScanHeatmaps } from './scans/heatmaps.js';
import type { ScanRenditions } from './scans/renditions.js';
import type { EventPublisher } from './webhooks/types.js';

export interface AppContext {
  config: Config;
  database: Database;
  db: Db;
  storage: Storage;
  /** Turns uploaded bytes into a display PNG, off the event loop and with a time limit. */
  imaging: ImageDecoder;
  signer: UrlSigner;
  tokens: TokenService;
  authenticate: onRequestHookHandler;
  /** Signed-in users, per process; started (LISTEN) by the runtime, bypassed until then. */
  userCache: UserCache<CachedUser>;
  /** The append-only audit trail of who read or changed what (src/audit). */
  audit: AuditLog;
  /** Failed sign-ins per account and address, shared by every process through the database. */
  loginThrottle: LoginThrottle;
  analysis: AnalysisQueue;
  events: EventPublisher;
  /** Prometheus metrics of this process (served at /metrics when METRICS_TOKEN is set). */
  metrics: Metrics;
  /** Rate-limit counters shared by every API process (REDIS_URL); null keeps them per process. */
  redis: Redis | null;
  /**
   * Heatmap PNGs drawn on their first read: one instance per app, so a link read and a report
   * made at once share one render.
   */
  heatmaps: ScanHeatmaps;
  /**
   * Scan display images and thumbnails rendered on their first read: one instance per process,
   * for the file routes, reports, heatmaps and the analysis job (src/runtime.ts).
   */
  renditions: ScanRenditions;
}

/** A feature of the API: its routes, mounted under its own prefix ('' for root paths). */
export interface Feature {
  prefix: string;
  routes(ctx: AppContext): FastifyPluginAsync;
}
