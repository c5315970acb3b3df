/**
 * One error type for everything the API refuses on purpose, and one table from its code to
 * the HTTP status. Services throw `AppError`; the global handler in app.ts answers
 * `{"error": message}` and hides the message of anything unexpected.
 */
const ERROR_STATUS = {
  bad_request: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  precondition_failed: 412,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unprocessable: 422,
  rate_limited: 429,
  unavailable: 503,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/**
 * How long a client should wait before trying again (the Retry-After header, in seconds) after
 * a 503: the database out of reach (any request that met the outage, an upload it could not
 * confirm, an answer the audit trail could not record, /readyz), or the server busy or shutting down (another process, or this one
 * a moment later, answers).
 */
export const RETRY_AFTER_SECONDS = { databaseOutage: 30, busy: 5 } as const;

export class AppError extends Error {
  override name = 'AppError';
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Sent as Retry-After: set where trying again later is the client's remedy (429, 503). */
    readonly retryAfterSeconds?: number,
    /**
     * Machine-readable fields sent beside `error`, for a client to act on without reading the
     * message's words (each route that throws them declares them in its response schema).
     */
    readonly fields?: Readonly<Record<string, string>>,
  ) {
    super(message);
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export const notFound = (what: string) => new AppError('not_found', `${what} not found`);
export const badRequest = (message: string) => new AppError('bad_request', message);
export const conflict = (message: string, fields?: Record<string, string>) => new AppError('conflict', message, undefined, fields);
export const forbidden = (message = 'You do not have permission to do this') => new AppError('forbidden', message);

/**
 * The answer to a request that met the database out of reach (see isDatabaseUnreachable): 503,
 * try again after RETRY_AFTER_SECONDS.databaseOutage. A change may have committed before its
 * connection dropped (the COMMIT's answer lost), so it is never said to be undone: the client
 * checks before sending it again.
 */
export function databaseUnreachable(method: string): AppError {
  const read = method === 'GET' || method === 'HEAD' || method === 'OPTIONS';
  return new AppError(
    'unavailable',
    read
      ? 'The database is not reachable at the moment: try again shortly'
      : 'The database is not reachable at the moment, so this change may or may not have been saved: check before sending it again, shortly',
    RETRY_AFTER_SECONDS.databaseOutage,
  );
}
