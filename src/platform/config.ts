/**
 * The one place that reads the environment. Every setting is parsed and validated here at
 * start-up, so a bad value stops the server with a message that names the variable, instead
 * of failing later in the middle of a request.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface Config {
  port: number;
  host: string;
  /** Absolute URL clients use to reach this server; signed image links are built on it. */
  publicUrl: string | null;
  /** /docs and /openapi.json: public (on), absent (off), or for signed-in users (auth). */
  apiDocs: 'on' | 'off' | 'auth';
  dataDir: string;
  databaseUrl: string | null;
  jwtSecret: Uint8Array;
  jwtExpiresIn: string;
  /** Secret for signed image/report links; derived from the JWT secret unless set. */
  urlSigningSecret: Uint8Array;
  signedUrlTtlSeconds: number;
  adminEmail: string | null;
  adminPassword: string | null;
  rateLimit: { max: number; windowMs: number };
  /** Failed sign-ins: slowed, then locked per account; locked per client address. */
  loginThrottle: { slowAfter: number; lockAfter: number; lockMinutes: number; maxPerIp: number; windowMinutes: number };
  redisUrl: string | null;
  /** Prefix of every Redis key, so several deployments can share one Redis. */
  redisKeyPrefix: string;
  trustProxy: boolean;
  logLevel: string;
  maxUploadMb: number;
  maxImagePixels: number;
  /** An upload whose decoding takes longer is refused (and its decoder thread stopped). */
  decodeTimeoutMs: number;
  storage: S3Config | null;
  modelsDir: string;
  /** Site calibrations written by `npm run calibrate` (default DATA_DIR/calibration). */
  calibrationDir: string;
  /** Named operating point of the chest model (CHEST_OPERATING_POINT); null: the manifest's default. */
  chestOperatingPoint: string | null;
  worker: {
    inProcess: boolean;
    concurrency: number;
    pollIntervalSeconds: number;
    /** An analysis still running after this long is taken as lost (its worker died) and retried. */
    analysisTimeoutSeconds: number;
    /** How often the queue looks for such lost jobs (pg-boss maintenance). */
    maintenanceSeconds: number;
  };
  webhooks: { allowPrivate: boolean; timeoutMs: number; maxAttempts: number };
  /** Prometheus metrics at /metrics, behind this bearer token; off when null. */
  metrics: { token: string | null; port: number | null };
  google: GoogleSettings;
  /** Browser origins allowed to call the API (CORS); never a wildcard. */
  corsOrigins: string[];
}

export interface S3Config {
  bucket: string;
  region: string;
  endpoint: string | null;
  accessKeyId: string | null;
  secretAccessKey: string | null;
  forcePathStyle: boolean;
  prefix: string;
}

export interface GoogleSettings {
  clientId: string | null;
  clientSecret: string | null;
  callbackUrl: string | null;
  clientUrl: string;
  issuer: string;
  autoProvision: 'inactive' | 'active' | 'off';
  allowedDomains: string[];
  /** Only for the end-to-end tests against a provider on loopback; never set in production. */
  allowInsecureIssuer?: boolean;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

function str(env: Env, key: string): string | null {
  const v = env[key];
  return v === undefined || v.trim() === '' ? null : v.trim();
}

function int(env: Env, key: string, fallback: number, min: number, max: number): number {
  const raw = str(env, key);
  if (raw === null) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${key} must be a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(`${key} must be between ${min} and ${max}, got ${n}`);
  return n;
}

function bool(env: Env, key: string, fallback: boolean): boolean {
  const raw = str(env, key);
  if (raw === null) return fallback;
  if (['true', '1', 'yes'].includes(raw.toLowerCase())) return true;
  if (['false', '0', 'no'].includes(raw.toLowerCase())) return false;
  throw new ConfigError(`${key} must be true or false, got "${raw}"`);
}

function url(env: Env, key: string, protocols: string[]): string | null {
  const raw = str(env, key);
  if (raw === null) return null;
  let parsed: URL;
  try {
    parsed = new URL(raw);
  } catch {
    throw new ConfigError(`${key} must be a URL, got "${raw}"`);
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(`${key} must use ${protocols.join(' or ')}, got "${parsed.protocol}"`);
  }
  return raw.replace(/\/$/, '');
}

function oneOf<T extends string>(env: Env, key: string, values: readonly T[], fallback: T): T {
  const raw = str(env, key);
  if (raw === null) return fallback;
  if (!(values as readonly string[]).includes(raw)) {
    throw new ConfigError(`${key} must be one of ${values.join(', ')}, got "${raw}"`);
  }
  return raw as T;
}

/** JWT secret from the environment, or generated once and kept in DATA_DIR (never a constant). */
function loadJwtSecret(env: Env, dataDir: string): Uint8Array {
  const raw = str(env, 'JWT_SECRET');
  if (raw !== null) {
    if (raw.length < 32) throw new ConfigError('JWT_SECRET must be at least 32 characters long');
    return new TextEncoder().encode(raw);
  }
  const file = path.join(dataDir, 'jwt-secret');
  if (!existsSync(file)) {
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(file, randomBytes(48).toString('base64url'), { mode: 0o600, flag: 'wx' });
  }
  chmodSync(file, 0o600);
  return new TextEncoder().encode(readFileSync(file, 'utf8').trim());
}

/**
 * CORS_ORIGINS: comma-separated origins (scheme, host and port, no path) of the browser apps
 * allowed to call the API. "*" is refused: the API carries patient data, so every origin is
 * named; the default is CLIENT_URL's origin, where the Google sign-in returns.
 */
function corsOrigins(env: Env, clientUrl: string): string[] {
  const raw = str(env, 'CORS_ORIGINS');
  if (raw === null) return [new URL(clientUrl).origin];
  return raw
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean)
    .map((o) => {
      if (o === '*') throw new ConfigError('CORS_ORIGINS must list origins (e.g. https://app.hospital.org); "*" is not allowed');
      let u: URL;
      try {
        u = new URL(o);
      } catch {
        throw new ConfigError(`CORS_ORIGINS must be a comma-separated list of origins, got "${o}"`);
      }
      if (!['http:', 'https:'].includes(u.protocol) || u.origin !== o.replace(/\/$/, '')) {
        throw new ConfigError(`CORS_ORIGINS entries must be origins like https://app.hospital.org (no path), got "${o}"`);
      }
      return u.origin;
    });
}

const DURATION = /^\d+\s*(s|m|h|d|w)$/;

/** A point name such as screening or balanced; whether the model has it is checked when it loads. */
function operatingPointName(env: Env, name: string): string | null {
  const v = str(env, name);
  if (v !== null && !/^[a-z][a-z0-9-]{0,39}$/.test(v)) {
    throw new ConfigError(`${name} must be an operating point name such as screening or balanced, got "${v.slice(0, 40)}"`);
  }
  return v;
}

export function loadConfig(env: Env = process.env): Config {
  const dataDir = path.resolve(str(env, 'DATA_DIR') ?? './data');
  const databaseUrl = url(env, 'DATABASE_URL', ['postgres:', 'postgresql:']);
  const jwtSecret = loadJwtSecret(env, dataDir);
  // Short-lived: a stolen token is worth an hour at most (and logout or a password change
  // ends it at once, see auth/tokens.ts).
  const jwtExpiresIn = str(env, 'JWT_EXPIRES_IN') ?? '1h';
  if (!DURATION.test(jwtExpiresIn)) {
    throw new ConfigError(`JWT_EXPIRES_IN must look like 30m, 12h or 7d, got "${jwtExpiresIn}"`);
  }
  const unitSeconds = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 } as const;
  const lifetime = parseInt(jwtExpiresIn, 10) * unitSeconds[jwtExpiresIn.trim().slice(-1) as keyof typeof unitSeconds];
  if (lifetime < 60 || lifetime > 86_400) {
    throw new ConfigError(`JWT_EXPIRES_IN must be between 1m and 24h (tokens are meant to be short-lived), got "${jwtExpiresIn}"`);
  }
  const signingRaw = str(env, 'URL_SIGNING_SECRET');
  const adminEmail = str(env, 'ADMIN_EMAIL');
  const adminPassword = str(env, 'ADMIN_PASSWORD');
  if ((adminEmail === null) !== (adminPassword === null)) {
    throw new ConfigError('ADMIN_EMAIL and ADMIN_PASSWORD must be set together');
  }
  if (adminPassword !== null && adminPassword.length < 10) {
    throw new ConfigError('ADMIN_PASSWORD must be at least 10 characters long (and hard to guess: it is checked at start-up)');
  }
  const bucket = str(env, 'S3_BUCKET');
  const port = int(env, 'PORT', 3000, 0, 65535);
  const publicUrl = url(env, 'PUBLIC_URL', ['http:', 'https:']);
  // The web app this server serves takes the token from the fragment on its sign-in page.
  const clientUrl =
    url(env, 'CLIENT_URL', ['http:', 'https:']) ?? `${(publicUrl ?? `http://localhost:${port}`).replace(/\/+$/, '')}/login`;
  const metricsToken = str(env, 'METRICS_TOKEN');
  if (metricsToken !== null && metricsToken.length < 16) throw new ConfigError('METRICS_TOKEN must be at least 16 characters long');
  const allowedDomains = (str(env, 'GOOGLE_ALLOWED_DOMAINS') ?? '')
    .split(',')
    .map((d) => d.trim().toLowerCase().replace(/^@/, ''))
    .filter(Boolean);

  return {
    port,
    host: str(env, 'HOST') ?? '0.0.0.0',
    publicUrl,
    apiDocs: oneOf(env, 'API_DOCS', ['on', 'off', 'auth'] as const, 'on'),
    dataDir,
    databaseUrl,
    jwtSecret,
    jwtExpiresIn,
    urlSigningSecret: signingRaw ? new TextEncoder().encode(signingRaw) : jwtSecret,
    signedUrlTtlSeconds: int(env, 'SIGNED_URL_TTL_SECONDS', 3600, 30, 7 * 24 * 3600),
    adminEmail: adminEmail?.toLowerCase() ?? null,
    adminPassword,
    rateLimit: {
      max: int(env, 'RATE_LIMIT_MAX', 100, 1, 1_000_000),
      windowMs: int(env, 'RATE_LIMIT_WINDOW_MS', 15 * 60 * 1000, 1000, 24 * 3600 * 1000),
    },
    loginThrottle: {
      slowAfter: 3,
      lockAfter: int(env, 'LOGIN_MAX_FAILURES', 10, 3, 1000),
      lockMinutes: int(env, 'LOGIN_LOCKOUT_MINUTES', 15, 1, 24 * 60),
      maxPerIp: int(env, 'LOGIN_MAX_FAILURES_PER_IP', 50, 5, 100_000),
      windowMinutes: 15,
    },
    redisUrl: url(env, 'REDIS_URL', ['redis:', 'rediss:']),
    redisKeyPrefix: str(env, 'REDIS_KEY_PREFIX') ?? 'imagemedix:',
    trustProxy: bool(env, 'TRUST_PROXY', false),
    logLevel: oneOf(env, 'LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
    maxUploadMb: int(env, 'MAX_UPLOAD_MB', 50, 1, 2048),
    maxImagePixels: int(env, 'MAX_IMAGE_PIXELS', 50_000_000, 1, 1_000_000_000),
    decodeTimeoutMs: int(env, 'DECODE_TIMEOUT_MS', 30_000, 1000, 600_000),
    storage: bucket
      ? {
          bucket,
          region: str(env, 'S3_REGION') ?? 'us-east-1',
          endpoint: url(env, 'S3_ENDPOINT', ['http:', 'https:']),
          accessKeyId: str(env, 'S3_ACCESS_KEY_ID'),
          secretAccessKey: str(env, 'S3_SECRET_ACCESS_KEY'),
          forcePathStyle: bool(env, 'S3_FORCE_PATH_STYLE', false),
          prefix: str(env, 'S3_PREFIX') ?? '',
        }
      : null,
    modelsDir: path.resolve(str(env, 'MODELS_DIR') ?? path.join(REPO_ROOT, 'models')),
    calibrationDir: path.resolve(str(env, 'CALIBRATION_DIR') ?? path.join(dataDir, 'calibration')),
    chestOperatingPoint: operatingPointName(env, 'CHEST_OPERATING_POINT'),
    worker: {
      inProcess: bool(env, 'WORKER_IN_PROCESS', true),
      concurrency: int(env, 'WORKER_CONCURRENCY', 2, 1, 64),
      pollIntervalSeconds: int(env, 'WORKER_POLL_SECONDS', 1, 1, 60),
      analysisTimeoutSeconds: int(env, 'ANALYSIS_TIMEOUT_SECONDS', 120, 2, 3600),
      maintenanceSeconds: int(env, 'QUEUE_MAINTENANCE_SECONDS', 30, 1, 600),
    },
    webhooks: {
      allowPrivate: bool(env, 'WEBHOOK_ALLOW_PRIVATE', false),
      timeoutMs: int(env, 'WEBHOOK_TIMEOUT_MS', 10_000, 100, 120_000),
      maxAttempts: int(env, 'WEBHOOK_MAX_ATTEMPTS', 8, 1, 20),
    },
    metrics: {
      token: metricsToken,
      port: str(env, 'METRICS_PORT') === null ? null : int(env, 'METRICS_PORT', 0, 1, 65535),
    },
    google: {
      clientId: str(env, 'GOOGLE_CLIENT_ID'),
      clientSecret: str(env, 'GOOGLE_CLIENT_SECRET'),
      callbackUrl: url(env, 'GOOGLE_CALLBACK_URL', ['http:', 'https:']),
      clientUrl,
      issuer: url(env, 'GOOGLE_ISSUER', ['http:', 'https:']) ?? 'https://accounts.google.com',
      autoProvision: oneOf(env, 'GOOGLE_AUTO_PROVISION', ['inactive', 'active', 'off'] as const, 'inactive'),
      allowedDomains,
    },
    corsOrigins: corsOrigins(env, clientUrl),
  };
}

export { REPO_ROOT };
