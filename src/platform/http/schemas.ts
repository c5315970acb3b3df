/** Schemas every feature's routes share. */
import { Type, type TSchema } from '@sinclair/typebox';

export const ErrorSchema = Type.Object({ error: Type.String() }, { $id: 'Error', description: 'Every error' });

/** The standard error responses of an authenticated route, to spread into `response`. */
export const authErrors = {
  400: ErrorSchema,
  401: ErrorSchema,
  403: ErrorSchema,
  404: ErrorSchema,
  429: ErrorSchema,
};

export const MessageSchema = Type.Object({ message: Type.String() });

export const IdParamsSchema = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 128, description: 'The resource _id' }),
});

/** A name or short label: one line, not blank (whitespace-only is refused, not trimmed to ''). */
export const Line = (opts: { minLength?: number; maxLength: number; description?: string }) =>
  Type.String({ minLength: 1, ...opts, singleLine: true });

/** Free text (a note, an annotation): several lines allowed, blank refused. */
export const Text = (opts: { maxLength: number; description?: string }) =>
  Type.String({ minLength: 1, ...opts, notBlank: true });

/**
 * Dates the API stores or filters on lie in 1900-9999: year 0000 is no date PostgreSQL knows,
 * and nothing in a medical record is older than its patient.
 */
export const MIN_YEAR = 1900;
export const MAX_YEAR = 9999;
export const yearInRange = (d: Date) => d.getUTCFullYear() >= MIN_YEAR && d.getUTCFullYear() <= MAX_YEAR;

const MAX_PAGE = 100_000;

export const PageQuery = {
  // Bounded: `page=1e308` is an integer to JSON Schema, and its offset overflows PostgreSQL.
  page: Type.Integer({ minimum: 1, maximum: MAX_PAGE, default: 1 }),
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 10 }),
};

export const IsoDateTime = Type.String({ format: 'date-time' });

/** A calendar date ("2025-05-01") or an ISO 8601 date-time (whose date part a date field uses). */
/** What DateOrDateTime's pattern asks for, in words (validation.ts shows it instead of the pattern). */
export const DATE_OR_DATE_TIME_HINT = 'a date (YYYY-MM-DD) or an ISO 8601 date-time, e.g. 2025-05-01T15:30:00Z';

export const DateOrDateTime = Type.String({
  pattern: '^\\d{4}-\\d{2}-\\d{2}(T[0-9:.]+(Z|[+-]\\d{2}:?\\d{2})?)?$',
  description: 'YYYY-MM-DD or ISO 8601 date-time',
  'x-pattern-hint': DATE_OR_DATE_TIME_HINT,
});

export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

