/**
 * What the feature plugins share: configuration and the I/O adapters, built once by the
 * process (server.ts, worker.ts) or by a test, and passed down explicitly.
 */
import type { onRequestHookHandler } from 'fastify';
import { createAuthHook, type CachedUser } from './auth/hooks.js';
import { createUserCache, type UserCache } from './auth/user-cache.js';
import { createAuditLog, type AuditLog } from './audit/log.js';
import { createLoginThrottle, type LoginThrottle } from './auth/throttle.js';
import { createTokenService, type TokenService } from './auth/tokens.js';
import type { Config } from './platform/config.js';
import type { Database, Db } from './platform/db/index.js';
import { createUrlSigner, type UrlSigner } from './platform/signing.js';
import { createLocalStorage, createS3Storage, type Storage } from './platform/storage/index.js';
import { createImageDecoder, type ImageDecoder } from './imaging/decoder.js';
import path from 'node:path';
import type { AnalysisQueue } from './analysis/types.js';
import type { EventPublisher } from './webhooks/types.js';
import { createMetrics, type Metrics } from './platform/metrics/index.js';

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
}

export function createContext(
  config: Config,
  database: Database,
  services: { analysis: AnalysisQueue; events: EventPublisher },
  overrides: Partial<AppContext> = {},
): AppContext {
  const storage =
    overrides.storage ?? (config.storage ? createS3Storage(config.storage) : createLocalStorage(path.join(config.dataDir, 'files')));
  const tokens = overrides.tokens ?? createTokenService(config.jwtSecret, config.jwtExpiresIn);
  const userCache = createUserCache<CachedUser>(database);
  return {
    config,
    database,
    db: database.db,
    storage,
    imaging: overrides.imaging ?? createImageDecoder({ timeoutMs: config.decodeTimeoutMs }),
    signer: overrides.signer ?? createUrlSigner(config.urlSigningSecret, config.signedUrlTtlSeconds),
    tokens,
    authenticate: createAuthHook(database.db, tokens, userCache),
    userCache,
    loginThrottle: createLoginThrottle(database.db, config.loginThrottle),
    audit: createAuditLog(database.db),
    analysis: services.analysis,
    events: services.events,
    metrics: overrides.metrics ?? createMetrics({ defaultMetrics: false }),
    ...overrides,
  };
}
