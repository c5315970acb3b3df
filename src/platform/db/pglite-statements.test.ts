import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PGlite } from '@electric-sql/pglite';
import { withNamedStatements } from './pglite-statements.js';
import { markAppendOnly, trackWrites, writesMayChange } from './write-generation.js';

describe('named statements on PGlite', () => {
  let raw: PGlite;
  before(async () => {
    raw = new PGlite();
    await raw.exec(`create table t (id int primary key, at timestamptz not null, doc jsonb, ids uuid[], note text)`);
  });
  after(() => raw.close());

  const prepared = async () => (await raw.query<{ name: string; generic_plans: number; custom_plans: number }>('select name, generic_plans, custom_plans from pg_prepared_statements')).rows;

  test('answer as unnamed statements do (types, nulls, array row mode), and are prepared from their second use', async () => {
    const client = withNamedStatements(raw);
    const at = new Date('2026-01-02T03:04:05.678Z');
    const ids = ['7f0c1b8e-0d6b-4a57-9a0e-1b2c3d4e5f60'];
    await client.query('insert into t (id, at, doc, ids, note) values ($1, $2, $3, $4, $5)', [1, at, { a: [1, 'x'] }, ids, null]);
    await client.query('insert into t (id, at, doc, ids, note) values ($1, $2, $3, $4, $5)', [2, at, null, null, 'two']);
    const text = 'select id, at, doc, ids, note from t where id = any($1::int[]) and at <= $2 order by id';
    const unnamed = await raw.query(text, [[1, 2], new Date()]);
    for (let i = 0; i < 8; i++) {
      const named = await client.query(text, [[1, 2], new Date()]);
      assert.deepEqual(named.rows, unnamed.rows);
      assert.deepEqual(
        named.fields.map((f) => f.name),
        ['id', 'at', 'doc', 'ids', 'note'],
      );
    }
    const asArrays = await client.query(text, [[1], new Date()], { rowMode: 'array' });
    assert.deepEqual(asArrays.rows, [[1, at, { a: [1, 'x'] }, ids, null]]);
    const statements = await prepared();
    assert.equal(statements.length, 2, 'the insert and the select, each once');
    assert.ok(
      statements.some((s) => s.generic_plans + s.custom_plans >= 7),
      'the select runs as its named statement',
    );
  });

  test('a failing named statement fails as unnamed, and the session goes on', async () => {
    const client = withNamedStatements(raw);
    const insert = 'insert into t (id, at) values ($1, now())';
    await client.query(insert, [10]);
    await client.query(insert, [11]);
    await assert.rejects(client.query(insert, [11]), (err: { code?: string; query?: string }) => err.code === '23505' && err.query === insert);
    assert.equal((await client.query<{ n: number }>('select count(*)::int as n from t where id >= $1', [10])).rows[0]?.n, 2);
    await assert.rejects(client.query('select nonsense from t where id = $1', [1]), /nonsense/);
    await assert.rejects(client.query('select nonsense from t where id = $1', [1]), /nonsense/);
  });

  test('a statement whose table changed under it is run afresh', async () => {
    await raw.exec('create table u (id int)');
    const client = withNamedStatements(raw);
    await client.query('insert into u values ($1)', [1]);
    const text = 'select * from u where id = $1';
    await client.query(text, [1]);
    await client.query(text, [1]);
    await raw.exec('alter table u add column extra text');
    assert.deepEqual((await client.query(text, [1])).rows, [{ id: 1, extra: null }]);
  });

  test('keeps at most `max` statements, closing the least recently used', async () => {
    const before = (await prepared()).length;
    const client = withNamedStatements(raw, { max: 2 });
    for (let n = 0; n < 5; n++) {
      const text = `select $1::int + ${n} as v`;
      assert.equal((await client.query<{ v: number }>(text, [1])).rows[0]?.v, 1 + n);
      assert.equal((await client.query<{ v: number }>(text, [2])).rows[0]?.v, 2 + n);
    }
    await client.query('select 1');
    assert.ok((await prepared()).length - before <= 3, 'evicted statements are closed');
    // A statement with many parameters (a multi-row INSERT) is never named.
    const many = `cardinality(array[${Array.from({ length: 300 }, (_, i) => `$${i + 1}::int`).join(', ')}])`;
    const huge = withNamedStatements(raw);
    const names = (await prepared()).length;
    for (let i = 0; i < 3; i++) assert.equal((await huge.query<{ v: number }>(`select ${many} as v`, Array.from({ length: 300 }, () => 1))).rows[0]?.v, 300);
    assert.equal((await prepared()).length, names);
  });
});

describe('the write generation of an embedded database', () => {
  test('moves for anything that may write, not for reads or audit rows', async () => {
    assert.equal(writesMayChange('select "id" from "scans" where "id" = $1'), false);
    assert.equal(writesMayChange('select "id" from "scans" for update'), true);
    assert.equal(writesMayChange('select pg_notify($1, $2)'), true);
    assert.equal(writesMayChange('with x as (insert into "scans" default values returning id) select * from x'), true);
    assert.equal(writesMayChange('update "scans" set "status" = $1'), true);
    assert.equal(writesMayChange('insert into "audit_events" ("id", "action") values (default, $1), (default, $2)'), false);
    assert.equal(writesMayChange('insert into "audit_events" ("id") select id from scans'), true);
    assert.equal(writesMayChange('insert into "scans" ("id") values ($1)'), true);
    // Asked again (the answers are kept by text), the same answers.
    assert.equal(writesMayChange('select "id" from "scans" for update'), true);
    assert.equal(writesMayChange('select "id" from "scans" where "id" = $1'), false);
    // A text declared append-only after it was first judged is judged again.
    const appended = `insert into "audit_log_${Date.now()}" ("id") values ($1)`;
    assert.equal(writesMayChange(appended), true);
    markAppendOnly(appended);
    assert.equal(writesMayChange(appended), false);

    const raw = new PGlite();
    try {
      const tracked = trackWrites(raw);
      const { client, generation } = tracked;
      await client.exec('create table w (id int)');
      const g0 = generation.current();
      await client.query('select * from w where id = $1', [1]);
      assert.equal(generation.current(), g0);
      await client.query('insert into w values ($1)', [1]);
      const g1 = generation.current();
      assert.notEqual(g1, g0);
      await client.transaction(async (tx) => {
        await tx.query('select 1');
      });
      const g2 = generation.current();
      assert.notEqual(g2, g1);
      await tracked.writing(() => client.query('select 1'));
      assert.notEqual(generation.current(), g2);
      // While a write is in flight the generation has already moved, and moves again when it ends.
      const g3 = generation.current();
      const inFlight = client.query('insert into w values ($1)', [2]);
      const during = generation.current();
      await inFlight;
      assert.notEqual(during, g3);
      assert.notEqual(generation.current(), during);
    } finally {
      await raw.close();
    }
  });
});
