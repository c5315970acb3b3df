/**
 * pino options shared by the API and the worker. Patient data never goes to logs: request
 * bodies are not logged, and headers or fields that carry credentials are redacted in case
 * someone logs an object that holds them.
 */
import type { LoggerOptions } from 'pino';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  '*.password',
  '*.token',
  '*.secret',
  '*.authorization',
];

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      // Log the route, not the full URL: query strings can carry signed-link signatures.
      req: (req: { method: string; url: string; routeOptions?: { url?: string }; id: string }) => ({
        id: req.id,
        method: req.method,
        route: req.routeOptions?.url ?? req.url.split('?')[0],
      }),
    },
  };
}
