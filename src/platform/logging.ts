/**
 * pino options shared by the API and the worker. Patient data never goes to logs: request
 * bodies and query strings are not logged, headers or fields that carry credentials are
 * redacted, and errors are logged by kind, code and stack frames only (`scrubError`), because
 * an error's message can quote data: Drizzle's lists every bound value of the failed query
 * (a patient's name, a webhook secret, a password hash), PostgreSQL's `detail` quotes the
 * duplicate key, and our own 4xx messages echo what the client sent.
 */
import type { FastifyBaseLogger } from 'fastify';
import type { Bindings, ChildLoggerOptions, LoggerOptions } from 'pino';

const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  '*.password',
  '*.passwordHash',
  '*.token',
  '*.secret',
  '*.authorization',
];

/** PostgreSQL error fields that name schema objects or the server's routine, never values. */
const SAFE_DRIVER_FIELDS = ['code', 'severity', 'routine', 'constraint', 'table', 'column', 'schema', 'dataType'] as const;
/** How deep a chain of causes is followed. */
const MAX_CAUSES = 3;

export interface ScrubbedError {
  type: string;
  /** An application or driver code (SQLSTATE, ENOENT, FST_...); never a value. */
  code?: string;
  /** The failed statement with `$n` placeholders: Drizzle always binds values separately. */
  query?: string;
  [field: string]: unknown;
  frames?: string;
  cause?: ScrubbedError;
}

function field(source: object, key: string): string | undefined {
  const value = (source as Record<string, unknown>)[key];
  return typeof value === 'string' || typeof value === 'number' ? String(value).slice(0, 200) : undefined;
}

/**
 * An error as it may be logged: its class, codes, schema names and stack frames. The message,
 * the query's parameters and the driver's `detail`, `hint` and `where` are left out, whatever
 * the error, so no code path has to remember to scrub. `query: false` leaves out the failed
 * statement's text too, where it tells nothing (the database was out of reach, not the query wrong).
 */
export function scrubError(err: unknown, opts: { query?: boolean } = {}, depth = 0): ScrubbedError {
  if (!(err instanceof Error)) {
    return { type: err === null ? 'null' : typeof err };
  }
  const out: ScrubbedError = { type: err.name || err.constructor.name };
  for (const key of SAFE_DRIVER_FIELDS) {
    const value = field(err, key);
    if (value !== undefined) out[key] = value;
  }
  // Drizzle's query error: the statement's text, whose values are bound as $1, $2...
  const { query } = err as { query?: unknown };
  if (opts.query !== false && typeof query === 'string' && 'params' in err) out.query = query.slice(0, 2000);
  const status = (err as { statusCode?: unknown }).statusCode;
  if (typeof status === 'number') out.statusCode = status;
  const frames = err.stack
    ?.split('\n')
    .filter((line) => line.trimStart().startsWith('at '))
    .slice(0, 15)
    .join('\n');
  if (frames) out.frames = frames;
  if (err.cause !== undefined && depth < MAX_CAUSES) out.cause = scrubError(err.cause, opts, depth + 1);
  return out;
}

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      // Log the route pattern, never the URL: a path can carry a patient id, a query string a
      // search term or a signed link's signature. An unmatched URL is not logged at all.
      req: (req: { method: string; url: string; routeOptions?: { url?: string }; id: string }) => ({
        id: req.id,
        method: req.method,
        route: req.routeOptions?.url ?? '(no route)',
      }),
      err: scrubError,
      error: scrubError,
    },
  };
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
type LevelCheck = { isLevelEnabled?(level: string): boolean };

/**
 * A request's logger that becomes pino's child (the request id bound) only when something is
 * logged at an enabled level, or a level is set. Fastify makes a child logger for every
 * request, and src/auth/hooks.ts another with the user id: two pino children per request
 * that, at the usual `warn` level, log nothing (9.4% of `GET /api/auth/me`'s main thread,
 * docs/benchmarks/api.md). Every line that is logged carries the same bindings as before.
 */
class LazyChildLogger {
  #made: FastifyBaseLogger | null = null;

  constructor(
    readonly parent: FastifyBaseLogger & LevelCheck,
    readonly bindings: Bindings,
    readonly options: ChildLoggerOptions,
  ) {}

  /** The pino child itself (and its parents'), made now if not yet. */
  logger(): FastifyBaseLogger {
    if (!this.#made) {
      const parent = this.parent instanceof LazyChildLogger ? this.parent.logger() : this.parent;
      this.#made = parent.child(this.bindings, this.options);
    }
    return this.#made;
  }

  get level(): string {
    return this.#made?.level ?? this.parent.level;
  }

  set level(level: string) {
    this.logger().level = level;
  }

  isLevelEnabled(level: string): boolean {
    return ((this.#made ?? this.parent) as LevelCheck).isLevelEnabled?.(level) ?? true;
  }

  child(bindings: Bindings, options: ChildLoggerOptions = {}): FastifyBaseLogger {
    return lazyChild(this as unknown as FastifyBaseLogger, bindings, options);
  }
}

for (const level of LOG_LEVELS) {
  Object.defineProperty(LazyChildLogger.prototype, level, {
    value: function log(this: LazyChildLogger, ...args: unknown[]) {
      if (level !== 'silent' && !this.isLevelEnabled(level)) return;
      const logger = this.logger();
      Reflect.apply(logger[level], logger, args);
    },
  });
}

function lazyChild(parent: FastifyBaseLogger & LevelCheck, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  // A child with its own level or serialisers (a route's logLevel), or of a logger that cannot
  // say which levels it writes (Fastify's null logger), is made at once.
  if (typeof parent.isLevelEnabled !== 'function' || options.level !== undefined || options.serializers !== undefined) {
    return parent.child(bindings, options);
  }
  return new LazyChildLogger(parent, bindings, options) as unknown as FastifyBaseLogger;
}

/** Fastify's `childLoggerFactory`: each request's logger, made on first use (see LazyChildLogger). */
export function requestLoggerFactory(logger: FastifyBaseLogger, bindings: Bindings, options: ChildLoggerOptions): FastifyBaseLogger {
  return lazyChild(logger, bindings, options);
}
