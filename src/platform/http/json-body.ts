/**
 * application/json as Fastify parses it (secure-json-parse: a `__proto__` or `constructor` key
 * is refused), except that an empty body is no body. Many HTTP wrappers set
 * `Content-Type: application/json` on every call, and the API document gives some calls no body
 * (DELETE /api/scans/:id, POST /api/scans/:id/report): Fastify's own parser refused those with a
 * 400. A route whose schema needs a body still refuses an empty one, by its validation
 * ("The request body is empty: send a JSON object", validation.ts).
 */
import type { FastifyInstance } from 'fastify';
import { badRequest } from '../errors.js';

export function parseJsonAllowingEmpty(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    // parseAs 'string' hands a string; the type also admits the Buffer of parseAs 'buffer'.
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text === '') {
      done(null, undefined);
      return;
    }
    void parse(request, text, (err, value) => {
      // Fastify answers "not valid JSON" for a body it refused for naming an object's prototype,
      // which sends the client looking for a syntax error that is not there: say what it is.
      if (err && isJson(text)) {
        done(badRequest('The request body has a "__proto__" key, or a "constructor" key holding "prototype", which the server refuses: rename or remove it'), undefined);
        return;
      }
      done(err, value);
    });
  });
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
