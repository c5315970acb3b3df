/**
 * pg-boss records a job's completion or failure without awaiting it; with the database down
 * at that moment the rejection was unhandled and ended the worker process. The executor given
 * to pg-boss answers those two statements' errors itself (the job is retried on expiry).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import PgBoss from 'pg-boss';
import pino from 'pino';
import { settledOutcomes } from './index.js';

const down = { executeSql: () => Promise.reject(Object.assign(new Error('Connection terminated unexpectedly'), { code: 'ECONNRESET' })) };

test("a job's completion or failure that cannot be written resolves (logged) instead of rejecting; other statements still reject", async () => {
  const lines: string[] = [];
  const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
  // pg-boss's own complete() and fail(), through the executor the queue gives it: the very SQL texts it sends.
  const boss = new PgBoss({ db: settledOutcomes(down, log) });
  const id = '8c1d9b36-3f0a-4a53-9d0e-3f4b1a2c5d6e';
  assert.deepEqual(await boss.complete('analyze-scan', id), { jobs: [id], requested: 1, affected: 0 });
  assert.deepEqual(await boss.fail('analyze-scan', id, new Error('cut')), { jobs: [id], requested: 1, affected: 0 });
  assert.equal(lines.filter((l) => l.includes('could not record a job outcome')).length, 2);
  // Anything else (a send, a fetch) still fails for its awaiting caller to handle.
  await assert.rejects(boss.send('analyze-scan', {}), /Connection terminated/);
});
