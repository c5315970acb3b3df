/** Turns Fastify/Ajv errors into messages a person can act on, naming the field. */
import type { FastifyError } from 'fastify';

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

export function validationMessage(err: FastifyError): string {
  const first = (err.validation as AjvError[] | undefined)?.[0];
  const where = err.validationContext ?? 'request';
  if (!first) return `Invalid ${where}`;
  const path = first.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const field = (name: string) => (path ? `${path}.${name}` : name);
  switch (first.keyword) {
    case 'required':
      return `${where} field "${field(String(first.params.missingProperty))}" is required`;
    case 'additionalProperties':
      return `${where} field "${field(String(first.params.additionalProperty))}" is not allowed`;
    case 'format':
      return `${where} field "${path}" must be a valid ${String(first.params.format)}`;
    case 'minProperties':
      return `${where} must contain at least one field to change`;
    default: {
      if (!path) return `Invalid ${where}: ${first.message ?? 'does not match the schema'}`;
      return `${where} field "${path}" ${first.message ?? 'is invalid'}`;
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
