/** Turns Fastify/Ajv errors into messages a person can act on, naming the field. */
import type { FastifyError } from 'fastify';

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
  /** The value that failed (the validator runs with Ajv's `verbose`). */
  data?: unknown;
  /** The schema holding the failed keyword (also from `verbose`). */
  parentSchema?: unknown;
}

const shown = (v: unknown) => (typeof v === 'string' ? `"${v.slice(0, 60)}"` : JSON.stringify(v));

/** The values a union of literals (or an enum) allows at `path`, from all of its branches' errors. */
function allowedValues(errors: AjvError[], instancePath: string): unknown[] {
  const out: unknown[] = [];
  for (const e of errors) {
    if (e.instancePath !== instancePath) continue;
    if (e.keyword === 'const') out.push(e.params.allowedValue);
    if (e.keyword === 'enum' && Array.isArray(e.params.allowedValues)) out.push(...(e.params.allowedValues as unknown[]));
    if (e.keyword === 'type' && e.params.type === 'null') out.push(null);
  }
  return out;
}

export function validationMessage(err: FastifyError): string {
  const errors = (err.validation as AjvError[] | undefined) ?? [];
  const first = errors[0];
  const where = err.validationContext ?? 'request';
  if (!first) return `Invalid ${where}`;
  const path = first.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const field = (name: string) => (path ? `${path}.${name}` : name);
  // Echo what was sent (short values only), but never a secret.
  const secret = /password|token|secret/i.test(path);
  const got = secret || first.data === undefined || typeof first.data === 'object' ? '' : `; got ${shown(first.data)}`;
  switch (first.keyword) {
    case 'required':
      return `${where} field "${field(String(first.params.missingProperty))}" is required`;
    case 'additionalProperties':
      return `${where} field "${field(String(first.params.additionalProperty))}" is not allowed`;
    case 'format':
      return `${where} field "${path}" must be a valid ${String(first.params.format)}${got}`;
    case 'singleLine':
      return `${where} field ${path} must be one line of text, not blank`;
    case 'notBlank':
      return `${where} field ${path} must not be blank`;
    case 'minProperties':
      return `${where} must contain at least one field to change`;
    case 'minLength':
      return first.params.limit === 1
        ? `${where} field "${path}" must not be empty`
        : `${where} field "${path}" must be at least ${String(first.params.limit)} characters${got}`;
    case 'maxLength': {
      // What was sent is long by definition: say how long, not what it said.
      const length = typeof first.data === 'string' ? `; got ${first.data.length}` : '';
      return `${where} field "${path}" must be at most ${String(first.params.limit)} characters${length}`;
    }
    case 'pattern': {
      // A schema may say in words what its pattern means (`x-pattern-hint`, an OpenAPI
      // extension Ajv ignores); a person reads that instead of the regular expression.
      const hint = (first.parentSchema as { 'x-pattern-hint'?: string } | undefined)?.['x-pattern-hint'];
      const pattern = String(first.params.pattern);
      // In a URL's query a `+` is a space: "2025-05-01T10:00:00+05:30" arrives with a space.
      const plusAsSpace =
        where === 'querystring' && typeof first.data === 'string' && first.data.includes(' ') && new RegExp(pattern, 'u').test(first.data.replaceAll(' ', '+'));
      const must = hint ? `must be ${hint}` : `must match the pattern ${pattern}`;
      return `${where} field "${path}" ${must}${got}${plusAsSpace ? ': a "+" in a URL must be sent as %2B' : ''}`;
    }
    case 'const':
    case 'enum': {
      const allowed = allowedValues(errors, first.instancePath);
      return `${where} field "${path}" must be one of ${allowed.map(shown).join(', ')}${got}`;
    }
    case 'type':
      if (!path && where === 'body') {
        // No body reaches the schema as null (as does a body of JSON null).
        return first.data == null ? 'The request body is empty: send a JSON object' : 'The request body must be a JSON object (Content-Type: application/json)';
      }
      if (!path) return `Invalid ${where}`;
      // ?status=a&status=b arrives as a list where one value is expected.
      if (where === 'querystring' && Array.isArray(first.data)) return `${where} field "${path}" was given more than once: give one value`;
      return `${where} field "${path}" must be ${String(first.params.type)}${got}`;
    default: {
      if (!path) return `Invalid ${where}: ${first.message ?? 'does not match the schema'}`;
      return `${where} field "${path}" ${first.message ?? 'is invalid'}${got}`;
    }
  }
}

const CLIENT_ERRORS: Record<string, string> = {
  FST_ERR_CTP_EMPTY_JSON_BODY: 'The request body is empty: send a JSON object',
  FST_ERR_CTP_BODY_TOO_LARGE: 'The request body is too large',
  FST_ERR_CTP_INVALID_JSON_BODY: 'The request body is not valid JSON',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'The Content-Length header does not match the body',
};

export function clientErrorMessage(err: FastifyError, contentType: string | undefined): string {
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return `Unsupported Content-Type "${contentType ?? ''}": send application/json`;
  }
  if (err instanceof SyntaxError) return 'The request body is not valid JSON';
  return CLIENT_ERRORS[err.code] ?? err.message;
}

/** Status and message for the errors Fastify's router raises before any handler runs. */
export function frameworkErrorMessage(err: FastifyError): { status: number; message: string } {
  switch (err.code) {
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return { status: 414, message: 'A path segment of the URL is too long (at most 100 characters): check the id in the URL' };
    case 'FST_ERR_BAD_URL':
      return { status: 400, message: 'The URL is not valid: a path segment is badly percent-encoded' };
    default:
      return { status: 400, message: 'The request could not be routed: check the URL' };
  }
}
