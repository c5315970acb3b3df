import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Type } from '@sinclair/typebox';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import pino from 'pino';
import { databaseKinds, openTestDatabase, type TestDatabase } from '../../../test/helpers/db.js';
import { captureLog } from '../../../test/helpers/log-capture.js';
import { buildQuery, executeBuilt, openDatabase, type Database } from '../db/index.js';
import { checkJobRegistry, openQueue, type JobDefinition, type Queue } from './index.js';

const log = pino({ level: 'silent' });
// Far longer than any wait below: a job picked up in time was woken, not polled.
const POLL_SECONDS = 30;

const CountPayloadSchema = Type.Object({ n: Type.Number() });

function recordingJob(name: string) {
  const handled: { data: { n: number }; at: number }[] = [];
  let onHandled: (() => void) | null = null;
  const job: JobDefinition<typeof CountPayloadSchema> = {
    name,
    payload: CountPayloadSchema,
    retryLimit: 0,
    retryDelaySeconds: 1,
    retryBackoff: false,
    expireInSeconds: 60,
    async handler(data) {
      handled.push({ data, at: Date.now() });
      onHandled?.();
    },
  };
  const next = (timeoutMs: number) =>
    new Promise<number | null>((resolve) => {
      const t = setTimeout(() => resolve(null), timeoutMs);
      onHandled = () => {
        clearTimeout(t);
        onHandled = null;
        resolve(Date.now());
      };
    });
  return { job, handled, next };
}

async function startWith(database: Database, job: JobDefinition<typeof CountPayloadSchema>, work: boolean): Promise<Queue> {
  const queue = await openQueue(database, { log, supervise: false });
  await queue.register([job.name], [job]);
  if (work) await queue.work(job.name, { concurrency: 2, pollIntervalSeconds: POLL_SECONDS, log });
  return queue;
}

describe('job registry', () => {
  const a = recordingJob('job-a').job;
  const b = recordingJob('job-b').job;

  test('start-up fails on a declared job with no handler', () => {
    assert.throws(() => checkJobRegistry(['job-a', 'job-b'], [a]), /Job job-b has no handler/);
  });

  test('start-up fails on a job with two handlers', () => {
    assert.throws(() => checkJobRegistry(['job-a'], [a, recordingJob('job-a').job]), /Job job-a has 2 handlers/);
  });

  test('start-up fails on a handler for a job nobody declared', () => {
    assert.throws(() => checkJobRegistry(['job-a'], [a, b]), /Job job-b has a handler but is not declared/);
  });

  test('one handler per declared job passes', () => {
    checkJobRegistry(['job-a', 'job-b'], [b, a]);
  });
});

describe('job payloads', () => {
  test('a payload that does not match the schema is dropped, never handed to the handler', async () => {
    const database = await openTestDatabase('pglite');
    const { job, handled, next } = recordingJob('payload-check');
    const queue = await startWith(database, job, true);
    try {
      const picked = next(1_500);
      // What an old release or a bug might have queued: the handler must not see it.
      await queue.send(job, { n: 'one' } as unknown as { n: number });
      assert.equal(await picked, null);
      await queue.send(job, { n: 2 });
      assert.ok(await next(5_000));
      assert.deepEqual(handled.map((h) => h.data), [{ n: 2 }]);
    } finally {
      await queue.stop();
      await database.destroy();
    }
  });
});

describe('a job completed by its handler', () => {
  test("in the handler's own statement: completed in that commit, and pg-boss sends no completion of its own; a statement that did not complete it leaves it to pg-boss", async () => {
    const database = await openTestDatabase('pglite');
    // Every statement pg-boss sends (on PGlite it runs through the database's executor).
    const sent: string[] = [];
    const counting: Database = {
      ...database,
      executor: {
        executeSql: (text, values) => {
          sent.push(text);
          return database.executor.executeSql(text, values);
        },
      },
    };
    const seenInHandler: string[] = [];
    const done: (() => void)[] = [];
    const job: JobDefinition<typeof CountPayloadSchema> = {
      name: 'complete-in-handler',
      payload: CountPayloadSchema,
      retryLimit: 0,
      retryDelaySeconds: 1,
      retryBackoff: false,
      expireInSeconds: 60,
      async handler({ n }, { completion }) {
        assert.ok(completion);
        // n = 1: the handler's statement completes the job; n = 2: its condition does not hold.
        const completeIt = completion.prepared.statement(n === 1 ? sql<boolean>`true` : sql<boolean>`false`);
        const query = buildQuery(sql`with job as (${completeIt}) select count(*)::int as n from job`);
        const rows = await executeBuilt<{ n: number }>(database.db, () => undefined, query, completion.prepared.values);
        if (rows[0]?.n === 1) completion.completed();
        const { rows: state } = await database.executor.executeSql(`select state from pgboss.job where name = $1 and data->>'n' = $2`, [
          job.name,
          String(n),
        ]);
        seenInHandler.push(`${n}: ${(state[0] as { state: string }).state}`);
        done.shift()?.();
      },
    };
    const queue = await openQueue(counting, { log, supervise: false });
    try {
      await queue.register([job.name], [job]);
      await queue.work(job.name, { concurrency: 1, pollIntervalSeconds: POLL_SECONDS, log });
      const states = async () =>
        (await database.executor.executeSql(`select data->>'n' as n, state from pgboss.job where name = $1 order by n`, [job.name])).rows;
      const completions = () => sent.filter((text) => /state = 'completed'/.test(text) && /UNNEST/i.test(text)).length;

      for (const n of [1, 2]) {
        const handled = new Promise<void>((resolve) => done.push(resolve));
        await queue.send(job, { n });
        await handled;
        // pg-boss records the outcome a few promise turns after the handler returns.
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.deepEqual(seenInHandler, ['1: completed', '2: active']);
      assert.deepEqual(await states(), [
        { n: '1', state: 'completed' },
        { n: '2', state: 'completed' },
      ]);
      assert.equal(completions(), 1, "pg-boss's own completion is sent for job 2 only");
    } finally {
      await queue.stop();
      await database.destroy();
    }
  });
});

for (const kind of await databaseKinds()) {
  describe(`job wake-up (${kind})`, () => {
    const open: { stop(): Promise<void> }[] = [];
    after(async () => {
      for (const o of open.reverse()) await o.stop();
    });

    test('a job enqueued in a transaction starts when the transaction commits, not at the next poll', async () => {
      const database: TestDatabase = await openTestDatabase(kind);
      open.push({ stop: () => database.destroy() });
      const { job, handled, next } = recordingJob('wake-tx');
      const queue = await startWith(database, job, true);
      open.push(queue);
      // The workers' first fetch (at start) found nothing; they now sleep for POLL_SECONDS.
      await new Promise((r) => setTimeout(r, 300));

      const picked = next(5_000);
      let committedAt = 0;
      await database.db.transaction(async (tx) => {
        await queue.send(job, { n: 1 }, { tx });
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(handled.length, 0, 'an uncommitted job must not run');
        committedAt = Date.now();
      });
      const at = await picked;
      assert.ok(at, 'the job was not picked up within 5 s (waited for the poll?)');
      assert.ok(at - committedAt < 1_000, `picked up ${at - committedAt} ms after the commit`);
      assert.deepEqual(
        handled.map((h) => h.data),
        [{ n: 1 }],
      );
    });

    test('a rolled-back enqueue wakes nothing and runs nothing', async () => {
      const database: TestDatabase = await openTestDatabase(kind);
      open.push({ stop: () => database.destroy() });
      const { job, handled, next } = recordingJob('wake-rollback');
      const queue = await startWith(database, job, true);
      open.push(queue);
      await new Promise((r) => setTimeout(r, 300));
      const picked = next(1_000);
      await assert.rejects(
        database.db.transaction(async (tx) => {
          await queue.send(job, { n: 2 }, { tx });
          throw new Error('roll back');
        }),
        /roll back/,
      );
      assert.equal(await picked, null);
      assert.equal(handled.length, 0);
    });

    if (kind === 'postgres') {
      test('only a process that works jobs LISTENs on the jobs channel: not an API-only one (which keeps its other listeners), a worker from its first work() until stop()', async () => {
        const database: TestDatabase = await openTestDatabase(kind);
        open.push({ stop: () => database.destroy() });
        const listening = async () => {
          const { rows } = await database.executor.executeSql(
            `select query from pg_stat_activity where datname = current_database() and query ilike 'LISTEN%'`,
          );
          return rows.map((r) => (r as { query: string }).query);
        };
        // A backend leaves pg_stat_activity a moment after its client ends.
        const settled = async (want: (channels: string[]) => boolean) => {
          for (let i = 0; i < 50 && !want(await listening()); i++) await new Promise((r) => setTimeout(r, 100));
          return listening();
        };
        const jobs = 'LISTEN "imagemedix_jobs"';
        const { job } = recordingJob('listen-set');
        const queue = await startWith(database, job, false);
        try {
          const api = await listening();
          assert.ok(!api.includes(jobs), `an API-only process listens on: ${api.join(', ')}`);
          assert.ok(api.includes('LISTEN "imagemedix_reads"'), 'list-page invalidation is still listened to');
          await queue.work(job.name, { concurrency: 1, pollIntervalSeconds: POLL_SECONDS, log });
          await queue.work(job.name, { concurrency: 1, pollIntervalSeconds: POLL_SECONDS, log });
          assert.equal((await listening()).filter((q) => q === jobs).length, 1, 'one jobs listener, whatever the number of work() calls');
        } finally {
          await queue.stop();
        }
        assert.ok(!(await settled((q) => !q.includes(jobs))).includes(jobs), 'stop() ends the jobs listener');
      });

      test('a job enqueued by another process is picked up at once (LISTEN/NOTIFY), also after the listener lost its connection', async () => {
        const database: TestDatabase = await openTestDatabase(kind);
        open.push({ stop: () => database.destroy() });
        // The "API" process: its own connections to the same database, no workers.
        const api = await openDatabase({ databaseUrl: database.connectionString, dataDir: null, poolSize: 2 });
        open.push({ stop: () => api.close() });
        const { job, handled, next } = recordingJob('wake-remote');
        const worker = await startWith(database, job, true);
        open.push(worker);
        const sender = await startWith(api, job, false);
        open.push(sender);
        await new Promise((r) => setTimeout(r, 300));

        let picked = next(5_000);
        let sentAt = Date.now();
        await sender.send(job, { n: 3 });
        let at = await picked;
        assert.ok(at && at - sentAt < 1_000, `picked up ${at ? at - sentAt : 'never'} (ms after the send)`);

        // A server restart drops every connection: the listener reconnects by itself.
        await api.executor.executeSql(
          `select pg_terminate_backend(pid) from pg_stat_activity
            where datname = current_database() and pid <> pg_backend_pid() and query ilike 'LISTEN%'`,
        );
        await new Promise((r) => setTimeout(r, 1_500));
        picked = next(5_000);
        sentAt = Date.now();
        await sender.send(job, { n: 4 });
        at = await picked;
        assert.ok(at && at - sentAt < 1_000, `after reconnecting, picked up ${at ? at - sentAt : 'never'} (ms after the send)`);
        assert.deepEqual(
          handled.map((h) => h.data.n),
          [3, 4],
        );
      });
    }
  });
}

if ((await databaseKinds()).includes('postgres')) {
  test('stop() during a fetch: the job that fetch brings back still runs, is recorded completed, and nothing runs on a closed pool (postgres)', async () => {
    const database: TestDatabase = await openTestDatabase('postgres');
    const locker = new pg.Client({ connectionString: database.connectionString! });
    try {
      const captured = captureLog('warn');
      const handled: number[] = [];
      const job: JobDefinition<typeof CountPayloadSchema> = {
        name: 'stop-during-fetch',
        payload: CountPayloadSchema,
        retryLimit: 0,
        retryDelaySeconds: 1,
        retryBackoff: false,
        expireInSeconds: 60,
        async handler({ n }) {
          await new Promise((r) => setTimeout(r, 100));
          handled.push(n);
        },
      };
      const queue = await openQueue(database, { log: captured.log, supervise: false });
      await queue.register([job.name], [job]);
      await queue.send(job, { n: 1 });
      // Hold the job table so the worker's first fetch is still on its way when stop() comes.
      await locker.connect();
      await locker.query('begin');
      await locker.query('lock table pgboss.job in access exclusive mode');
      await queue.work(job.name, { concurrency: 1, pollIntervalSeconds: 30, log: captured.log });
      for (let i = 0; ; i++) {
        const { rows } = await locker.query(
          `select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`,
        );
        if ((rows[0] as { n: number }).n > 0) break;
        assert.ok(i < 500, 'the fetch never started');
        await new Promise((r) => setTimeout(r, 20));
      }
      const stopping = queue.stop();
      // Let stop() get as far as it goes on its own, then let the fetch return the job.
      await new Promise((r) => setTimeout(r, 300));
      await locker.query('commit');
      await stopping;
      assert.deepEqual(handled, [1], 'stop() returned before the fetched job had run');
      const { rows } = await database.executor.executeSql(`select state from pgboss.job where name = $1`, [job.name]);
      assert.deepEqual(rows, [{ state: 'completed' }]);
      assert.deepEqual(captured.entries().filter((e) => (e.level as number) >= 50), []);
    } finally {
      await locker.end().catch(() => undefined);
      await database.destroy();
    }
  });
}
