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
  payload_too_large: 413,
  unsupported_media_type: 415,
  unprocessable: 422,
  rate_limited: 429,
  unavailable: 503,
  internal: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class AppError extends Error {
  override name = 'AppError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export const notFound = (what: string) => new AppError('not_found', `${what} not found`);
export const badRequest = (message: string) => new AppError('bad_request', message);
export const conflict = (message: string) => new AppError('conflict', message);
export const forbidden = (message = 'You do not have permission to do this') => new AppError('forbidden', message);
