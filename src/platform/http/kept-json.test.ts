import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Type } from '@sinclair/typebox';
import Fastify from 'fastify';
import { sendKeptArray } from './kept-json.js';

const PageSchema = Type.Object({
  items: Type.Array(Type.Object({ id: Type.String(), note: Type.Union([Type.String(), Type.Null()]) })),
  page: Type.Integer(),
  total: Type.Integer(),
});

/** An item whose fields count how often they are read: a serialised item is read again only when written again. */
function counted(id: string, note: string | null, reads: { n: number }) {
  return {
    get id() {
      reads.n++;
      return id;
    },
    note,
    secret: 'never in the answer',
  };
}

test('a kept array is written once: later answers reuse its JSON, and their other fields are written anew by the schema', async () => {
  const reads = { n: 0 };
  const kept = [counted('a', 'x "quoted" \u2028', reads), counted('b', null, reads)];
  let answer: Record<string, unknown> = { items: kept, page: 1, total: 2 };
  const app = Fastify();
  app.get('/', { schema: { response: { 200: PageSchema } } }, async (_request, reply) => sendKeptArray(reply, 'items', answer));
  const plain = Fastify();
  plain.get('/', { schema: { response: { 200: PageSchema } } }, async () => answer);
  try {
    const first = await app.inject('/');
    assert.equal(first.statusCode, 200);
    assert.equal(first.headers['content-type'], 'application/json; charset=utf-8');
    // The same bytes as Fastify's own serializer (no `secret`: the schema still decides what leaves).
    assert.equal(first.body, (await plain.inject('/')).body);
    assert.deepEqual(first.json(), { items: [{ id: 'a', note: 'x "quoted" \u2028' }, { id: 'b', note: null }], page: 1, total: 2 });
    const readsOnce = reads.n;

    answer = { items: kept, page: 3, total: 40 };
    const again = await app.inject('/');
    assert.equal(reads.n, readsOnce, 'the kept array was serialised again');
    assert.deepEqual(again.json(), { items: [{ id: 'a', note: 'x "quoted" \u2028' }, { id: 'b', note: null }], page: 3, total: 40 });
    assert.equal(again.body, (await plain.inject('/')).body);

    // Another array (a page read again after a write) is written anew.
    answer = { items: [counted('c', 'y', reads)], page: 1, total: 1 };
    const fresh = await app.inject('/');
    assert.deepEqual(fresh.json(), { items: [{ id: 'c', note: 'y' }], page: 1, total: 1 });
    answer = { items: [], page: 1, total: 0 };
    assert.deepEqual((await app.inject('/')).json(), { items: [], page: 1, total: 0 });
  } finally {
    await app.close();
    await plain.close();
  }
});
