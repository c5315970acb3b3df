/**
 * Answers whose bulk is a kept array (the views of a kept list page, scans/service.ts): the
 * route's own 200 serializer writes that array once, and later answers with the same array
 * object reuse its JSON. Serialising ten scans by the schema was the largest share of a kept
 * list page's request (fast-json-stringify checks every nullable field's branch with Ajv).
 */
import type { FastifyReply } from 'fastify';

type Serialize = (payload: Record<string, unknown>) => string;

/** JSON of the kept arrays, per route serializer (a schema writes its own JSON), by the array's identity. */
const keptJson = new WeakMap<Serialize, WeakMap<readonly unknown[], string>>();

/**
 * Sends `payload` as the route's 200 schema writes it, as Fastify would, but keeps the JSON of
 * its first field, an array, with the array: the rest of the answer (a page number, a total) is
 * written anew each time. The array must not change once answered: kept views never do (a new
 * set of views is a new array).
 */
export function sendKeptArray<T extends Record<string, unknown>>(reply: FastifyReply, field: keyof T & string, payload: T): FastifyReply {
  const whole: Serialize | undefined = reply.getSerializationFunction('200');
  if (!whole) throw new Error(`${reply.request.routeOptions.url ?? 'this route'} has no 200 response schema to serialise by`);
  let byArray = keptJson.get(whole);
  if (!byArray) keptJson.set(whole, (byArray = new WeakMap()));
  const head = `{${JSON.stringify(field)}:`;
  const serialize = (answer: Record<string, unknown>): string => {
    const items = answer[field];
    if (!Array.isArray(items) || items.length === 0) return whole(answer);
    // The answer with an empty array in place: what follows the array, written by the schema.
    const envelope = whole({ ...answer, [field]: [] });
    if (!envelope.startsWith(`${head}[]`)) return whole(answer);
    const tail = envelope.slice(head.length + 2);
    let json = byArray.get(items);
    if (json === undefined) {
      const full = whole(answer);
      if (!full.startsWith(head) || !full.endsWith(tail)) return full;
      byArray.set(items, (json = full.slice(head.length, full.length - tail.length)));
    }
    return head + json + tail;
  };
  // A reply's own serializer leaves the content type to the route: the one Fastify gives JSON.
  return reply.type('application/json; charset=utf-8').serializer(serialize).send(payload);
}
