/**
 * Text the API accepts is text: control characters (NUL above all, which PostgreSQL refuses
 * in text and jsonb, turning a stored field into a 500) and broken UTF-16 are refused with a
 * 400 naming the field, before any schema, trimming or query sees them. Tab, line feed and
 * carriage return stay allowed in free text (notes, addresses); single-line fields refuse
 * them through the `singleLine` schema keyword (validator.ts).
 */
import type { FastifyRequest } from 'fastify';
import { badRequest } from '../errors.js';

/** C0 controls but tab, LF and CR; DEL and C1 controls; a surrogate without its pair. */
const FORBIDDEN =
  /[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The first forbidden character of a string, as U+XXXX, or null. */
export function controlCharacterIn(s: string): string | null {
  const m = FORBIDDEN.exec(s);
  if (!m) return null;
  return `U+${m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
}

/**
 * Walks a parsed body, query or params object without recursion (a 10,000-deep JSON body
 * must not overflow the stack) and returns the path and character of the first bad string.
 */
function findControlCharacter(value: unknown): { path: string; char: string } | null {
  const stack: { value: unknown; path: string }[] = [{ value, path: '' }];
  while (stack.length > 0) {
    const item = stack.pop()!;
    const v = item.value;
    if (typeof v === 'string') {
      const char = controlCharacterIn(v);
      if (char) return { path: item.path, char };
    } else if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], path: item.path ? `${item.path}.${i}` : String(i) });
    } else if (v !== null && typeof v === 'object') {
      for (const [key, child] of Object.entries(v)) {
        const path = item.path ? `${item.path}.${key}` : key;
        const char = controlCharacterIn(key);
        if (char) return { path, char };
        stack.push({ value: child, path });
      }
    }
  }
  return null;
}

const PARTS = [
  ['params', 'path parameter'],
  ['query', 'querystring field'],
  ['body', 'body field'],
] as const;

/** A global preValidation hook: every route, with or without a schema. */
export async function rejectControlCharacters(request: FastifyRequest): Promise<void> {
  for (const [part, label] of PARTS) {
    const found = findControlCharacter(request[part]);
    if (found) {
      const where = found.path ? `${label} "${found.path}"` : `The request ${part === 'body' ? 'body' : part}`;
      throw badRequest(`${where} contains a control character (${found.char}): send plain text`);
    }
  }
}
