/**
 * The one place that reads the environment. Every setting is parsed and validated here at
 * start-up, so a bad value stops the server with a message that names the variable, instead
 * of failing later in the middle of a request.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { KindGuard, Type, type Static, type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';

export interface Config {
  port: number;
  host: string;
  /** Absolute URL clients use to reach this server; signed image links are built on it. */
  publicUrl: string | null;
  /** /docs and /openapi.json: public (on), absent (off), or for signed-in users (auth). */
  apiDocs: 'on' | 'off' | 'auth';
  dataDir: string;
  databaseUrl: string | null;
  /** Named (prepared) statements on the PostgreSQL server; off behind a pooler that cannot keep them. */
  databasePreparedStatements: boolean;
  jwtSecret: Uint8Array;
  jwtExpiresIn: string;
  /** Secret for signed image/report links; derived from the JWT secret unless set. */
  urlSigningSecret: Uint8Array;
  signedUrlTtlSeconds: number;
  adminEmail: string | null;
  adminPassword: string | null;
  /** Requests per window: `max` per address (anonymous, sign-in), `userMax` per signed-in user. */
  rateLimit: { max: number; userMax: number; windowMs: number };
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
  /**
   * What uploads cut off by a crash left in storage (temporary files, unfinished S3 multipart
   * uploads) is removed once nothing was written to it for `ageMinutes`, swept every `intervalMinutes`.
   */
  partialUploads: { ageMinutes: number; intervalMinutes: number };
  /**
   * Uploads up to this many bytes keep their original in the database, committed with the
   * scan's row (src/scans/originals.ts), instead of a file of its own; 0: every original a file.
   */
  originalsInDatabaseMaxBytes: number;
  /**
   * Stored scan files whose scan has no row (an upload answered 503 that was not committed) are
   * removed once nothing was written to them for `ageHours`, swept every `intervalHours`.
   */
  orphanFiles: { ageHours: number; intervalHours: number };
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

interface GoogleSettings {
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

/** A signed-in user's allowance: 1000 unless set, and never below an address's (signing in must not lower it). */
function rateLimitUserMax(addressMax: number, set: number | null | undefined): number {
  if (set === null || set === undefined) return Math.max(1000, addressMax);
  if (set < addressMax) throw new ConfigError(`RATE_LIMIT_USER_MAX must be at least RATE_LIMIT_MAX (${addressMax}), got ${set}`);
  return set;
}

type Env = Record<string, string | undefined>;

const REPO_ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');

/** Extra schema options the parser below reads: the URL schemes a variable accepts, and what a pattern means. */
interface EnvOptions {
  description: string;
  protocols?: string[];
  /** Says what the pattern asks for, in the error message (e.g. "look like 30m, 12h or 7d"). */
  hint?: string;
}
const Int = (fallback: number | undefined, minimum: number, maximum: number, description: string) =>
  Type.Integer({ ...(fallback === undefined ? {} : { default: fallback }), minimum, maximum, description });
const Bool = (fallback: boolean, description: string) => Type.Boolean({ default: fallback, description });
const Text = (description: string, options: { default?: string; minLength?: number; pattern?: string; hint?: string } = {}) =>
  Type.String({ description, ...options });
const Url = (protocols: string[], description: string) => Type.String({ description, protocols } satisfies EnvOptions);
const OneOf = <T extends string>(values: readonly T[], fallback: T, description: string) =>
  Type.Union(
    values.map((v) => Type.Literal(v)),
    { default: fallback, description },
  );

/**
 * Every environment variable the server reads, with its type, limits and default. Parsed once
 * at start-up (loadConfig); a bad value stops the process with a message naming the variable.
 */
const ConfigSchema = Type.Object({
  PORT: Int(3000, 0, 65535, 'Port the API listens on'),
  HOST: Text('Address the API listens on', { default: '0.0.0.0' }),
  PUBLIC_URL: Url(['http:', 'https:'], 'Absolute URL clients use to reach this server (signed links are built on it)'),
  API_DOCS: OneOf(['on', 'off', 'auth'] as const, 'on', '/docs and /openapi.json: public, absent, or for signed-in users'),
  DATA_DIR: Text('Embedded database, files and generated secrets', { default: './data' }),
  DATABASE_URL: Url(['postgres:', 'postgresql:'], 'PostgreSQL server; embedded PGlite when unset'),
  DATABASE_PREPARED_STATEMENTS: Bool(true, 'Named (prepared) statements on the PostgreSQL server; false behind PgBouncer in transaction mode before 1.21'),
  JWT_SECRET: Text('Secret of the sign-in tokens; generated into DATA_DIR when unset', { minLength: 32 }),
  JWT_EXPIRES_IN: Text('Lifetime of a sign-in token, 1m to 24h', { default: '1h', pattern: '^\\d+\\s*(s|m|h|d|w)$', hint: 'look like 30m, 12h or 7d' }),
  URL_SIGNING_SECRET: Text('Secret of signed file links; derived from the JWT secret when unset'),
  SIGNED_URL_TTL_SECONDS: Int(3600, 30, 7 * 24 * 3600, 'Lifetime of a signed file link'),
  ADMIN_EMAIL: Text('First administrator, created when no admin exists (with ADMIN_PASSWORD)'),
  ADMIN_PASSWORD: Text('Password of ADMIN_EMAIL', { minLength: 10, hint: 'be at least 10 characters long (and hard to guess: it is checked at start-up)' }),
  RATE_LIMIT_MAX: Int(100, 1, 1_000_000, 'Requests per client address and window: anonymous calls and signing in'),
  RATE_LIMIT_USER_MAX: Int(
    undefined,
    1,
    10_000_000,
    'Requests per signed-in user and window, wherever they call from; default 1000, never below RATE_LIMIT_MAX',
  ),
  RATE_LIMIT_WINDOW_MS: Int(15 * 60 * 1000, 1000, 24 * 3600 * 1000, 'Rate-limit window'),
  LOGIN_MAX_FAILURES: Int(10, 3, 1000, 'Failed sign-ins before an account is locked'),
  LOGIN_LOCKOUT_MINUTES: Int(15, 1, 24 * 60, 'How long a locked account stays locked'),
  LOGIN_MAX_FAILURES_PER_IP: Int(50, 5, 100_000, 'Failed sign-ins per client address before it is locked'),
  REDIS_URL: Url(['redis:', 'rediss:'], 'Redis for rate limits shared by several API processes'),
  REDIS_KEY_PREFIX: Text('Prefix of every Redis key', { default: 'imagemedix:' }),
  TRUST_PROXY: Bool(false, 'Take the client address from X-Forwarded-For'),
  LOG_LEVEL: OneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info', 'pino log level'),
  MAX_UPLOAD_MB: Int(50, 1, 2048, 'Largest upload'),
  MAX_IMAGE_PIXELS: Int(50_000_000, 1, 1_000_000_000, 'Largest image (decompression-bomb guard)'),
  DECODE_TIMEOUT_MS: Int(30_000, 1000, 600_000, 'An upload whose decoding takes longer is refused'),
  S3_BUCKET: Text('S3 bucket for files; local DATA_DIR/files when unset'),
  S3_REGION: Text('S3 region', { default: 'us-east-1' }),
  S3_ENDPOINT: Url(['http:', 'https:'], 'S3-compatible endpoint (MinIO...)'),
  S3_ACCESS_KEY_ID: Text('S3 access key (else the SDK default chain)'),
  S3_SECRET_ACCESS_KEY: Text('S3 secret key'),
  S3_FORCE_PATH_STYLE: Bool(false, 'Path-style S3 URLs (MinIO)'),
  S3_PREFIX: Text('Prefix of every S3 key', { default: '' }),
  ORIGINALS_IN_DATABASE_MAX_KB: Int(
    1024,
    0,
    1024,
    'Uploads up to this size keep their original in the database with the scan\'s row, not a file of their own; 0: every original a file',
  ),
  PARTIAL_UPLOAD_AGE_MINUTES: Int(1440, 10, 30 * 1440, 'A crashed upload\'s leftovers (temporary file, unfinished S3 multipart upload) idle this long are removed'),
  PARTIAL_UPLOAD_SWEEP_MINUTES: Int(60, 1, 1440, 'How often those leftovers are looked for'),
  ORPHAN_FILE_AGE_HOURS: Int(24, 1, 24 * 365, 'Stored scan files whose scan has no row (an upload that was not committed) this old are removed'),
  ORPHAN_FILE_SWEEP_HOURS: Int(6, 1, 24 * 7, 'How often such files are looked for'),
  MODELS_DIR: Text('Installed models (manifest + ONNX)'),
  CALIBRATION_DIR: Text('Site calibrations (npm run calibrate); default DATA_DIR/calibration'),
  CHEST_OPERATING_POINT: Text('Named operating point of the chest model', {
    pattern: '^[a-z][a-z0-9-]{0,39}$',
    hint: 'be an operating point name such as screening, general or balanced',
  }),
  WORKER_IN_PROCESS: Bool(true, 'npm start also works analysis jobs'),
  WORKER_CONCURRENCY: Int(2, 1, 64, 'Analyses at once per process'),
  WORKER_POLL_SECONDS: Int(1, 1, 60, 'Queue polling interval (fallback to notifications)'),
  ANALYSIS_TIMEOUT_SECONDS: Int(120, 2, 3600, 'An analysis running longer is taken as lost and retried'),
  QUEUE_MAINTENANCE_SECONDS: Int(30, 1, 600, 'How often the queue looks for lost jobs'),
  WEBHOOK_ALLOW_PRIVATE: Bool(false, 'Allow webhooks to private addresses'),
  WEBHOOK_TIMEOUT_MS: Int(10_000, 100, 120_000, 'Deadline of one webhook delivery'),
  WEBHOOK_MAX_ATTEMPTS: Int(8, 1, 20, 'Tries of one webhook delivery'),
  METRICS_TOKEN: Text('Bearer token of /metrics; off when unset', { minLength: 16 }),
  METRICS_PORT: Int(undefined, 1, 65535, 'Port of a worker process\'s /metrics'),
  CLIENT_URL: Url(['http:', 'https:'], 'The web app\'s sign-in page (Google sign-in returns there)'),
  GOOGLE_CLIENT_ID: Text('Google sign-in client id'),
  GOOGLE_CLIENT_SECRET: Text('Google sign-in client secret'),
  GOOGLE_CALLBACK_URL: Url(['http:', 'https:'], 'Registered redirect URI of Google sign-in'),
  GOOGLE_ISSUER: Url(['http:', 'https:'], 'OpenID issuer of Google sign-in'),
  GOOGLE_AUTO_PROVISION: OneOf(['inactive', 'active', 'off'] as const, 'inactive', 'Accounts made on a first Google sign-in'),
  GOOGLE_ALLOWED_DOMAINS: Text('Comma-separated email domains allowed to sign in with Google'),
  CORS_ORIGINS: Text('Comma-separated browser origins allowed to call the API (default CLIENT_URL\'s)'),
});

type EnvSettings = { [K in keyof Static<typeof ConfigSchema>]: Static<typeof ConfigSchema>[K] | null };

/** One variable's text as its schema's type; throws a ConfigError that names the variable. */
function parseVariable(key: string, schema: TSchema, raw: string): unknown {
  const fail = (message: string) => new ConfigError(`${key} ${message}`);
  if (KindGuard.IsInteger(schema)) {
    if (!/^\d+$/.test(raw)) throw fail(`must be a whole number, got "${raw}"`);
    return Number(raw);
  }
  if (KindGuard.IsBoolean(schema)) {
    if (['true', '1', 'yes'].includes(raw.toLowerCase())) return true;
    if (['false', '0', 'no'].includes(raw.toLowerCase())) return false;
    throw fail(`must be true or false, got "${raw}"`);
  }
  const members = (schema as { anyOf?: TSchema[] }).anyOf;
  if (members) {
    const values = members.map((member) => (KindGuard.IsLiteral(member) ? String(member.const) : ''));
    if (!values.includes(raw)) throw fail(`must be one of ${values.join(', ')}, got "${raw}"`);
    return raw;
  }
  const { protocols } = schema as Partial<EnvOptions>;
  if (protocols) {
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      throw fail(`must be a URL, got "${raw}"`);
    }
    if (!protocols.includes(parsed.protocol)) throw fail(`must use ${protocols.join(' or ')}, got "${parsed.protocol}"`);
    return raw.replace(/\/$/, '');
  }
  return raw;
}

/** The environment, parsed by ConfigSchema: each variable typed, limited and defaulted (null when unset without a default). */
function parseEnvironment(env: Env): EnvSettings {
  const out: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(ConfigSchema.properties) as [string, TSchema & EnvOptions & Record<string, unknown>][]) {
    const text = env[key]?.trim();
    out[key] = text ? parseVariable(key, schema, text) : (schema.default ?? null);
    if (out[key] === null) continue;
    // The limits (range, length, pattern) as the schema states them.
    const error = Value.Errors(schema, out[key]).First();
    if (!error) continue;
    const parsed = out[key] as string | number | boolean;
    const value = String(parsed);
    // Secrets (the variables with a minimum length) are never repeated in the message.
    if (typeof schema.minLength === 'number') {
      throw new ConfigError(`${key} must ${schema.hint ?? `be at least ${schema.minLength} characters long`}`);
    }
    if (schema.hint) throw new ConfigError(`${key} must ${schema.hint}, got "${value.slice(0, 40)}"`);
    if (typeof schema.minimum === 'number') {
      throw new ConfigError(`${key} must be between ${schema.minimum} and ${String(schema.maximum)}, got ${value}`);
    }
    throw new ConfigError(`${key} ${error.message}, got "${value.slice(0, 40)}"`);
  }
  return out as EnvSettings;
}

/** JWT secret from the environment, or generated once and kept in DATA_DIR (never a constant). */
function loadJwtSecret(raw: string | null, dataDir: string): Uint8Array {
  if (raw !== null) return new TextEncoder().encode(raw);
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
function corsOrigins(raw: string | null, clientUrl: string): string[] {
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

export function loadConfig(env: Env = process.env): Config {
  const e = parseEnvironment(env);
  const dataDir = path.resolve(e.DATA_DIR ?? './data');
  const jwtSecret = loadJwtSecret(e.JWT_SECRET, dataDir);
  // Short-lived: a stolen token is worth an hour at most (and logout or a password change
  // ends it at once, see auth/tokens.ts).
  const jwtExpiresIn = e.JWT_EXPIRES_IN ?? '1h';
  const unitSeconds = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 } as const;
  const lifetime = parseInt(jwtExpiresIn, 10) * unitSeconds[jwtExpiresIn.trim().slice(-1) as keyof typeof unitSeconds];
  if (lifetime < 60 || lifetime > 86_400) {
    throw new ConfigError(`JWT_EXPIRES_IN must be between 1m and 24h (tokens are meant to be short-lived), got "${jwtExpiresIn}"`);
  }
  if ((e.ADMIN_EMAIL === null) !== (e.ADMIN_PASSWORD === null)) {
    throw new ConfigError('ADMIN_EMAIL and ADMIN_PASSWORD must be set together');
  }
  const port = e.PORT ?? 3000;
  // The web app this server serves takes the token from the fragment on its sign-in page.
  const clientUrl = e.CLIENT_URL ?? `${(e.PUBLIC_URL ?? `http://localhost:${port}`).replace(/\/+$/, '')}/login`;
  const allowedDomains = (e.GOOGLE_ALLOWED_DOMAINS ?? '')
    .split(',')
    .map((d) => d.trim().toLowerCase().replace(/^@/, ''))
    .filter(Boolean);
  const defaulted = <T>(value: T | null): T => {
    // Every variable read below has a default in ConfigSchema.
    if (value === null) throw new Error('a ConfigSchema default is missing');
    return value;
  };

  return {
    port,
    host: defaulted(e.HOST),
    publicUrl: e.PUBLIC_URL,
    apiDocs: defaulted(e.API_DOCS),
    dataDir,
    databaseUrl: e.DATABASE_URL,
    databasePreparedStatements: defaulted(e.DATABASE_PREPARED_STATEMENTS),
    jwtSecret,
    jwtExpiresIn,
    urlSigningSecret: e.URL_SIGNING_SECRET ? new TextEncoder().encode(e.URL_SIGNING_SECRET) : jwtSecret,
    signedUrlTtlSeconds: defaulted(e.SIGNED_URL_TTL_SECONDS),
    adminEmail: e.ADMIN_EMAIL?.toLowerCase() ?? null,
    adminPassword: e.ADMIN_PASSWORD,
    rateLimit: {
      max: defaulted(e.RATE_LIMIT_MAX),
      userMax: rateLimitUserMax(defaulted(e.RATE_LIMIT_MAX), e.RATE_LIMIT_USER_MAX),
      windowMs: defaulted(e.RATE_LIMIT_WINDOW_MS),
    },
    loginThrottle: {
      slowAfter: 3,
      lockAfter: defaulted(e.LOGIN_MAX_FAILURES),
      lockMinutes: defaulted(e.LOGIN_LOCKOUT_MINUTES),
      maxPerIp: defaulted(e.LOGIN_MAX_FAILURES_PER_IP),
      windowMinutes: 15,
    },
    redisUrl: e.REDIS_URL,
    redisKeyPrefix: defaulted(e.REDIS_KEY_PREFIX),
    trustProxy: defaulted(e.TRUST_PROXY),
    logLevel: defaulted(e.LOG_LEVEL),
    maxUploadMb: defaulted(e.MAX_UPLOAD_MB),
    maxImagePixels: defaulted(e.MAX_IMAGE_PIXELS),
    decodeTimeoutMs: defaulted(e.DECODE_TIMEOUT_MS),
    storage: e.S3_BUCKET
      ? {
          bucket: e.S3_BUCKET,
          region: defaulted(e.S3_REGION),
          endpoint: e.S3_ENDPOINT,
          accessKeyId: e.S3_ACCESS_KEY_ID,
          secretAccessKey: e.S3_SECRET_ACCESS_KEY,
          forcePathStyle: defaulted(e.S3_FORCE_PATH_STYLE),
          prefix: defaulted(e.S3_PREFIX),
        }
      : null,
    originalsInDatabaseMaxBytes: defaulted(e.ORIGINALS_IN_DATABASE_MAX_KB) * 1024,
    partialUploads: { ageMinutes: defaulted(e.PARTIAL_UPLOAD_AGE_MINUTES), intervalMinutes: defaulted(e.PARTIAL_UPLOAD_SWEEP_MINUTES) },
    orphanFiles: { ageHours: defaulted(e.ORPHAN_FILE_AGE_HOURS), intervalHours: defaulted(e.ORPHAN_FILE_SWEEP_HOURS) },
    modelsDir: path.resolve(e.MODELS_DIR ?? path.join(REPO_ROOT, 'models')),
    calibrationDir: path.resolve(e.CALIBRATION_DIR ?? path.join(dataDir, 'calibration')),
    chestOperatingPoint: e.CHEST_OPERATING_POINT,
    worker: {
      inProcess: defaulted(e.WORKER_IN_PROCESS),
      concurrency: defaulted(e.WORKER_CONCURRENCY),
      pollIntervalSeconds: defaulted(e.WORKER_POLL_SECONDS),
      analysisTimeoutSeconds: defaulted(e.ANALYSIS_TIMEOUT_SECONDS),
      maintenanceSeconds: defaulted(e.QUEUE_MAINTENANCE_SECONDS),
    },
    webhooks: {
      allowPrivate: defaulted(e.WEBHOOK_ALLOW_PRIVATE),
      timeoutMs: defaulted(e.WEBHOOK_TIMEOUT_MS),
      maxAttempts: defaulted(e.WEBHOOK_MAX_ATTEMPTS),
    },
    metrics: { token: e.METRICS_TOKEN, port: e.METRICS_PORT },
    google: {
      clientId: e.GOOGLE_CLIENT_ID,
      clientSecret: e.GOOGLE_CLIENT_SECRET,
      callbackUrl: e.GOOGLE_CALLBACK_URL,
      clientUrl,
      issuer: e.GOOGLE_ISSUER ?? 'https://accounts.google.com',
      autoProvision: defaulted(e.GOOGLE_AUTO_PROVISION),
      allowedDomains,
    },
    corsOrigins: corsOrigins(e.CORS_ORIGINS, clientUrl),
  };
}

export { REPO_ROOT };
