/**
 * The job queue: pg-boss on the application's own PostgreSQL database (no second datastore).
 * On embedded PGlite it runs through the SQL adapter of platform/db; on a server it opens its
 * own small pool. Each job is declared once (`JobDefinition`: name, payload schema, handler);
 * the composition root (src/runtime.ts) opens the queue and then registers every job at once
 * against JOB_NAMES there, so a job without a handler, or with two, stops the start.
 */
import type { Static, TObject } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { sql, type SQL } from 'drizzle-orm';
import { createRequire } from 'node:module';
import PgBoss from 'pg-boss';
import type { Logger } from 'pino';
import { executorFor, namedByText, serverPool, type Database, type DbOrTx, type SqlExecutor } from '../db/index.js';
import { scrubError } from '../logging.js';

interface JobContext {
  jobId: string;
  /** 1 on the first try, 2 on the first retry... */
  attempt: number;
  /** When the job was first enqueued (time in the queue = start - this, on the first try). */
  enqueuedAt?: Date;
  log: Logger;
  /** Completes this try's job in the handler's own final statement (see JobCompletion); absent when a test calls the handler. */
  completion?: JobCompletion;
}

/**
 * A job's completion written by its handler, in the statement that records the job's outcome
 * in the feature's tables: one commit for both, and no separate round trip by pg-boss after
 * the handler returns. `prepared.statement(when)` is a data-modifying statement for a CTE: it completes
 * the job if this try still holds it (active, this attempt) and `when` holds, returning its id.
 * `completed()` tells the queue it did, so pg-boss's own completion of the job is not sent; a
 * job the statement did not complete is completed by pg-boss when the handler returns, as before.
 */
export interface JobCompletion {
  /**
   * The statement with the job's name, id and try as placeholders, and their values: built once
   * per form by the statement that embeds it and run with each try's values (the analysis's end).
   * `statement` is one function for every try (the embedding statement knows its form by it).
   */
  prepared: { statement(when: SQL<boolean>): SQL; values: Record<string, unknown> };
  completed(): void;
}

/** The job try's completion (JobCompletion.prepared): its name, id and try are placeholders. */
const completeJobSql = (when: SQL<boolean>): SQL =>
  sql`update pgboss.job set completed_on = now(), state = 'completed', output = null
        where name = ${sql.placeholder('jobName')} and id = ${sql.placeholder('jobId')}::uuid and state = 'active'
          and retry_count = ${sql.placeholder('jobRetryCount')} and (${when})
        returning id`;

export interface JobDefinition<S extends TObject = TObject> {
  name: string;
  /** The payload's shape; a payload that does not match is a bug, and such a job is dropped. */
  payload: S;
  retryLimit: number;
  retryDelaySeconds: number;
  retryBackoff: boolean;
  /** A job still active after this long is treated as lost (worker died) and retried. */
  expireInSeconds: number;
  // A method, so that a list of jobs with different payloads is a JobDefinition[] without casts.
  handler(data: Static<S>, ctx: JobContext): Promise<void>;
}

/** Thrown by a handler for a failure that retrying cannot fix (refused image, bad data). */
export class PermanentJobError extends Error {
  override name = 'PermanentJobError';
}

/** NOTIFY channel of enqueued jobs; the payload is the queue's name. */
const JOBS_CHANNEL = 'imagemedix_jobs';

/**
 * pg-boss's job insert (one `INSERT ... RETURNING id` statement) with the wake-up NOTIFY in the
 * same statement: one round trip per enqueue instead of two, on the upload's hottest path. The
 * NOTIFY still goes out at commit, and only when a job was inserted.
 */
function notifyingInsert(executor: SqlExecutor, queueName: string): SqlExecutor {
  return {
    executeSql(text, values = []) {
      const n = values.length;
      return executor.executeSql(`with inserted as (${text}) select inserted.id, pg_notify($${n + 1}, $${n + 2}) from inserted`, [
        ...values,
        JOBS_CHANNEL,
        queueName,
      ]);
    },
  };
}

/** A job as pg-boss's multi-job insert takes it (one element of its JSON array). */
export interface JobRecord {
  id?: string;
  name: string;
  data: unknown;
  retryLimit: number;
  retryDelay: number;
  retryBackoff: boolean;
  expireInSeconds: number;
}

/** A job of `job` as a record for `insertJobsSql`, with the definition's retry settings (as `send` gives them). */
export function jobRecord<S extends TObject>(job: JobDefinition<S>, data: Static<S> | null, id?: string): JobRecord {
  const record: JobRecord = {
    name: job.name,
    data,
    retryLimit: job.retryLimit,
    retryDelay: job.retryDelaySeconds,
    retryBackoff: job.retryBackoff,
    expireInSeconds: job.expireInSeconds,
  };
  // Set after, not spread in: a spread of a conditional object is a slow path on every upload.
  if (id) record.id = id;
  return record;
}

/**
 * pg-boss's own multi-job insert (`boss.insert`), for a statement that queues its jobs itself
 * (an upload's one statement): inserts the jobs that `records` lists (SQL giving a JSON array
 * of `JobRecord`s, null for none), returning the queue name of each job inserted, for
 * `notifyJobsSql`. Its defaults are pg-boss's when none is configured (ours sets none).
 */
export function insertJobsSql(records: SQL): SQL {
  const [head, tail] = INSERT_JOBS.split(RECORDS_PARAM);
  return sql`${sql.raw(head!)}json_to_recordset(${records})${sql.raw(tail!)} returning name`;
}

/** The wake-up NOTIFY (at commit) of the jobs the `insertJobsSql` CTE named `inserted` inserted: one row, to join. */
export function notifyJobsSql(inserted: string): SQL {
  return sql`select count(pg_notify(${JOBS_CHANNEL}, queued.name)) as notified from (select distinct name from ${sql.identifier(inserted)}) as queued`;
}

/** A handler's failure as pg-boss keeps it: kind, codes and stack frames, never a message. */
class JobFailedError extends Error {
  override name = 'JobFailedError';
  constructor(cause: unknown) {
    const scrubbed = scrubError(cause);
    super(`${scrubbed.type}${scrubbed.code ? ` (${scrubbed.code})` : ''}`);
    this.stack = `${this.name}: ${this.message}\n${scrubbed.frames ?? ''}`;
  }
}

/** Where a job stands in pg-boss (for status answers and the reconciler). */
interface JobState {
  state: 'created' | 'retry' | 'active' | 'completed' | 'cancelled' | 'failed';
  /** What the handler's last failure left (a scrubbed error), or its result. */
  output: unknown;
}

export interface Queue {
  /** Creates the queues of `jobs`; each name in `declared` must have exactly one definition. */
  register(declared: readonly string[], jobs: readonly JobDefinition[]): Promise<void>;
  /**
   * Enqueues a job, inside the caller's transaction when `tx` is given; `id` is the job's id
   * when the caller must know it before the insert (a UUID).
   */
  send<S extends TObject>(
    job: JobDefinition<S>,
    data: Static<S>,
    opts?: { tx?: DbOrTx; startAfterSeconds?: number; id?: string },
  ): Promise<string>;
  /**
   * Enqueues a job unless one with the same `key` was already enqueued, by any process, in the
   * current window of `seconds` (pg-boss's throttled send): N processes asking each window get
   * one job. Answers whether this call enqueued it.
   */
  sendThrottled<S extends TObject>(job: JobDefinition<S>, data: Static<S>, opts: { key: string; seconds: number }): Promise<boolean>;
  /**
   * Starts `concurrency` workers of the registered job `name` in this process, and `ahead` more
   * that a notification wakes only while one of its jobs is running here: they take the next
   * jobs of a busy queue while the others work, and leave an idle one to the first
   * `concurrency` (one wake-up, as many fetches as before).
   */
  work(name: string, opts: { concurrency: number; ahead?: number; pollIntervalSeconds: number; log: Logger }): Promise<void>;
  /** Stops this process's workers of `name` (the jobs stay queued). */
  stopWorking(name: string): Promise<void>;
  /** Takes up to `max` queued jobs of `job` off the queue without running them (tests, tools). */
  take<S extends TObject>(job: JobDefinition<S>, max: number): Promise<Static<S>[]>;
  jobState(name: string, id: string): Promise<JobState | null>;
  stop(): Promise<void>;
}

/** Start-up check: every declared job has exactly one definition, and none is undeclared. */
export function checkJobRegistry(declared: readonly string[], jobs: readonly JobDefinition[]): void {
  for (const name of declared) {
    const handlers = jobs.filter((j) => j.name === name).length;
    if (handlers === 0) throw new Error(`Job ${name} has no handler`);
    if (handlers > 1) throw new Error(`Job ${name} has ${handlers} handlers`);
  }
  for (const job of jobs) {
    if (!declared.includes(job.name)) throw new Error(`Job ${job.name} has a handler but is not declared in JOB_NAMES (src/runtime.ts)`);
  }
}

export async function openQueue(
  database: Database,
  opts: { log: Logger; supervise: boolean; maintenanceIntervalSeconds?: number },
): Promise<Queue> {
  const common = {
    supervise: opts.supervise,
    schedule: false,
    // Maintenance is what notices jobs whose worker died (expired) and retries them.
    maintenanceIntervalSeconds: opts.maintenanceIntervalSeconds ?? 30,
  };
  // pg-boss runs its SQL through an executor of ours that counts the statements in flight, so
  // stop() can wait for the last ones: pg-boss does not await a job's completion (`complete`
  // runs after the handler, unawaited) nor a fetch that began before stop() and may still
  // return a job; closing its connections under them was the "Cannot use a pool after calling
  // end" error at shutdown. On a server the pool is ours too, closed once they are done.
  const pool = database.connectionString ? serverPool({ connectionString: database.connectionString, max: 4, preparedStatements: database.preparedStatements }) : null;
  const counted = countStatements(
    pool
      ? {
          async executeSql(text, values) {
            // pg-boss's statements with parameters (a fixed set of texts: its fetch, completions,
            // inserts) are named, so each connection plans its fetch once instead of at every
            // poll. A text without parameters may be several statements, which cannot be named.
            const name = values && values.length > 0 ? bossStatementName(text) : undefined;
            const r = await pool.query({ name, text, values });
            return { rows: r.rows };
          },
        }
      : database.executor,
  );
  // Jobs whose handler completed them in its own statement (JobCompletion), until pg-boss's completion of them comes.
  const completedByHandler = new Set<string>();
  const boss = new PgBoss({ db: settledOutcomes(skipCompletedByHandler(counted.executor, completedByHandler), opts.log), ...common });
  boss.on('error', (err: Error) => opts.log.error({ err }, 'queue error'));
  await boss.start();
  const registered = new Map<string, JobDefinition>();
  const handlers = { running: 0 };
  const workersByQueue = new Map<string, { all: string[]; first: string[]; running: number }>();
  // Work starts at once: every enqueue NOTIFYs in its own transaction, so the wake-up arrives
  // when (and only if) the job is committed, in every process listening on the same database.
  // Polling stays as the fallback (missed notifications, delayed retries).
  const wake = (name: string) => {
    const workers = workersByQueue.get(name);
    if (!workers) return;
    for (const id of workers.running > 0 ? workers.all : workers.first) boss.notifyWorker(id);
  };
  // Only a process that works jobs listens, from its first work(): PostgreSQL wakes every
  // listening session at each notifying commit (every upload), and an API-only process
  // (WORKER_IN_PROCESS=false) has no worker to wake (docs/benchmarks/ingest.md).
  let listening: Promise<() => Promise<void>> | null = null;
  const listen = () => {
    listening ??= database.listen(JOBS_CHANNEL, {
      onNotify: wake,
      onReconnect: () => {
        for (const name of workersByQueue.keys()) wake(name);
      },
      onError: (err) => opts.log.warn({ err: err.message }, 'job notifications lost; reconnecting (polling meanwhile)'),
    });
    // A LISTEN that failed is tried again by the next work().
    listening.catch(() => (listening = null));
    return listening;
  };

  async function runJob(job: JobDefinition, j: PgBoss.JobWithMetadata, log: Logger): Promise<void> {
    const jobLog = log.child({ job: job.name, jobId: j.id });
    const attempt = j.retryCount + 1;
    let data: Static<TObject>;
    try {
      data = Value.Parse(job.payload, j.data);
    } catch (err) {
      jobLog.error({ err }, 'malformed job payload; dropping it');
      return;
    }
    const completion: JobCompletion = {
      prepared: {
        statement: completeJobSql,
        values: { jobName: j.name, jobId: j.id, jobRetryCount: j.retryCount },
      },
      completed: () => completedByHandler.add(j.id),
    };
    try {
      await job.handler(data, { jobId: j.id, attempt, enqueuedAt: j.createdOn, log: jobLog, completion });
    } catch (err) {
      if (err instanceof PermanentJobError) {
        // Returning completes the pg-boss job so it is not retried; the handler has
        // recorded the failure (and its reason) in the feature's own tables.
        jobLog.warn({ reason: err.message }, 'job failed permanently');
        return;
      }
      jobLog.warn({ err, attempt }, 'job failed; pg-boss will retry it if tries remain');
      // pg-boss stores what a handler throws in its job table: store the scrubbed
      // error, since a failed query's message lists its parameters.
      throw new JobFailedError(err);
    }
  }

  return {
    async register(declared, jobs) {
      checkJobRegistry(declared, jobs);
      for (const job of jobs) {
        // An existing queue keeps its settings here: createQueue only inserts (ON CONFLICT DO
        // NOTHING), so calling it again changes nothing and takes DDL locks for no gain.
        if (await boss.getQueue(job.name)) {
          registered.set(job.name, job);
          continue;
        }
        await boss.createQueue(job.name, {
          name: job.name,
          policy: 'standard',
          retryLimit: job.retryLimit,
          retryDelay: job.retryDelaySeconds,
          retryBackoff: job.retryBackoff,
          expireInSeconds: job.expireInSeconds,
        });
        registered.set(job.name, job);
      }
    },
    async send(job, data, { tx, startAfterSeconds, id: jobId } = {}) {
      const id = await boss.send(job.name, data, {
        ...(jobId ? { id: jobId } : {}),
        retryLimit: job.retryLimit,
        retryDelay: job.retryDelaySeconds,
        retryBackoff: job.retryBackoff,
        expireInSeconds: job.expireInSeconds,
        ...(startAfterSeconds ? { startAfter: startAfterSeconds } : {}),
        db: notifyingInsert(tx ? executorFor(tx) : counted.executor, job.name),
      });
      if (!id) throw new Error(`Job ${job.name} was not queued`);
      return id;
    },
    async sendThrottled(job, data, { key, seconds }) {
      const id = await boss.sendThrottled(
        job.name,
        data,
        { retryLimit: job.retryLimit, retryDelay: job.retryDelaySeconds, retryBackoff: job.retryBackoff, expireInSeconds: job.expireInSeconds },
        seconds,
        key,
      );
      return Boolean(id);
    },
    async work(name, { concurrency, ahead = 0, pollIntervalSeconds, log }) {
      const job = registered.get(name);
      if (!job) throw new Error(`Job ${name} is not registered`);
      await listen();
      const workers = workersByQueue.get(job.name) ?? { all: [], first: [], running: 0 };
      workersByQueue.set(job.name, workers);
      for (let i = 0; i < concurrency + ahead; i++) {
        let workerId: string | undefined;
        const id = await boss.work<object>(
          job.name,
          { batchSize: 1, pollingIntervalSeconds: pollIntervalSeconds, includeMetadata: true },
          async ([j]) => {
            if (!j) return;
            // pg-boss waits a whole polling interval after every fetch, even one that found a
            // job; notifying the worker now makes it fetch again as soon as this job is done,
            // so a busy queue drains at the pace of the work, not of the poll.
            if (workerId) boss.notifyWorker(workerId);
            handlers.running++;
            workers.running++;
            try {
              await runJob(job, j, log);
            } finally {
              handlers.running--;
              workers.running--;
            }
          },
        );
        workerId = id;
        workers.all.push(id);
        if (i < concurrency) workers.first.push(id);
      }
    },
    async stopWorking(name) {
      await boss.offWork(name);
      workersByQueue.delete(name);
    },
    async take(job, max) {
      const jobs = (await boss.fetch(job.name, { batchSize: max })) ?? [];
      return jobs.map((j) => Value.Parse(job.payload, j.data));
    },
    async jobState(name, id) {
      const job = await boss.getJobById(name, id);
      return job ? { state: job.state, output: job.output } : null;
    },
    async stop() {
      const unlisten = await listening?.catch(() => null);
      listening = null;
      await unlisten?.();
      // Waits for the handlers that are running (up to 20 s), then for pg-boss's last statements
      // (a job's completion, a fetch begun before the stop and the job it returned).
      await boss.stop({ graceful: true, wait: true, timeout: 20_000, close: false });
      await counted.drained(handlers, 10_000);
      await pool?.end();
    },
  };
}

// pg-boss's own SQL texts, built as its manager builds them (schema `pgboss`, the default).
const bossPlans = createRequire(import.meta.url)('pg-boss/src/plans.js') as {
  completeJobs(schema: string): string;
  failJobsById(schema: string): string;
  insertJobs(schema: string): string;
};
const RECORDS_PARAM = 'json_to_recordset($1)';
/** pg-boss's multi-job insert with its defaults ($2-$6: none configured) as NULL and its records ($1) to be spliced in. */
const INSERT_JOBS = (() => {
  const text = bossPlans.insertJobs('pgboss').replace(/\$[2-6]\b/g, 'null').trimEnd();
  if (text.split(RECORDS_PARAM).length !== 2 || /\$\d/.test(text.replace(RECORDS_PARAM, '')) || !text.endsWith('ON CONFLICT DO NOTHING')) {
    throw new Error('pg-boss insertJobs is not the text this module was written for: check insertJobsSql (src/platform/queue)');
  }
  return text;
})();
const COMPLETE_JOBS = bossPlans.completeJobs('pgboss');
const FAIL_JOBS = bossPlans.failJobsById('pgboss');
const UNAWAITED = new Map([
  [COMPLETE_JOBS, 'complete'],
  [FAIL_JOBS, 'fail'],
]);

/**
 * pg-boss completes a job after its handler returns (one statement per job); a job its handler
 * already completed in its own statement (JobCompletion) is answered here as completed,
 * without that round trip. Only ids the handler completed are skipped: any other job in the
 * same call, or one that fails instead, goes to the database as before.
 */
function skipCompletedByHandler(inner: SqlExecutor, completedByHandler: Set<string>): SqlExecutor {
  return {
    async executeSql(text, values) {
      if (text !== COMPLETE_JOBS && text !== FAIL_JOBS) return inner.executeSql(text, values);
      const ids = (values?.[1] ?? []) as string[];
      const skip = text === COMPLETE_JOBS && ids.length > 0 && ids.every((id) => completedByHandler.has(id));
      for (const id of ids) completedByHandler.delete(id);
      if (skip) return { rows: [{ count: String(ids.length) }] };
      return inner.executeSql(text, values);
    },
  };
}

/**
 * pg-boss 10 records a job's outcome without awaiting it (`manager.work` calls `this.complete`
 * and `this.fail` and drops their promises), so a database outage at that moment was an
 * unhandled rejection that ended the worker process: both workers of the fault test
 * (test/deployment/faults.test.ts) died of it during a PostgreSQL restart. Those two
 * statements' errors are logged here (scrubbed) and answered as "nothing changed": the job
 * stays active, and pg-boss's maintenance retries it once it expires, which every handler is
 * safe for (analyses name their try; a webhook is re-sent under the same webhook-id).
 */
export function settledOutcomes(inner: SqlExecutor, log: Logger): SqlExecutor {
  return {
    async executeSql(text, values) {
      const outcome = UNAWAITED.get(text);
      if (outcome === undefined) return inner.executeSql(text, values);
      try {
        return await inner.executeSql(text, values);
      } catch (err) {
        log.warn({ err, outcome }, 'could not record a job outcome; the job is retried when it expires');
        return { rows: [{ count: '0' }] };
      }
    },
  };
}

const bossStatementName = namedByText('pgboss');

/** An executor that knows how many of its statements are still running. */
function countStatements(inner: SqlExecutor) {
  let inFlight = 0;
  return {
    executor: {
      async executeSql(text: string, values?: unknown[]) {
        inFlight++;
        try {
          return await inner.executeSql(text, values);
        } finally {
          inFlight--;
        }
      },
    } satisfies SqlExecutor,
    /** Resolves once no statement and no handler has run for a moment, or after `timeoutMs`. */
    async drained(handlers: { running: number }, timeoutMs: number) {
      const deadline = Date.now() + timeoutMs;
      // Two quiet checks a timer apart: a job's completion is issued a few promise turns after
      // its handler returns, never across a timer.
      let quiet = 0;
      while (quiet < 2 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        quiet = inFlight === 0 && handlers.running === 0 ? quiet + 1 : 0;
      }
    },
  };
}

/** A job that is still to run or running: waiting for its first try, for a retry, or active. */
export interface PendingJob {
  data: unknown;
  state: 'created' | 'retry' | 'active';
  /** When pg-boss will (or did) hand it to a worker: for a retry, the backoff's due time. */
  startAfter: Date;
  /** Tries already made and failed. */
  retryCount: number;
}

/**
 * The pending jobs of queue `name` whose payload has `field` equal to `value`, read from
 * pg-boss's own job table (the same database, whether PGlite or a server), so what a page
 * shows of retries is what the queue will actually do.
 */
export async function pendingJobs(db: DbOrTx, name: string, match: { field: string; value: string }): Promise<PendingJob[]> {
  const { rows } = await executorFor(db).executeSql(
    `select data, state::text as state, start_after as "startAfter", retry_count as "retryCount"
       from pgboss.job
      where name = $1 and state in ('created', 'retry', 'active') and data ->> $2 = $3`,
    [name, match.field, match.value],
  );
  return (rows as Array<{ data: unknown; state: PendingJob['state']; startAfter: Date | string; retryCount: number }>).map((r) => ({
    data: r.data,
    state: r.state,
    startAfter: new Date(r.startAfter),
    retryCount: Number(r.retryCount),
  }));
}
