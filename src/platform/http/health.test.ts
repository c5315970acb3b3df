/** /readyz: what the load balancer is answered, and what the log says, when the database fails. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import Fastify from 'fastify';
import { captureLog } from '../../../test/helpers/log-capture.js';
import { healthRoutes } from './health.js';

async function readyzWhile(failure: Error) {
  const captured = captureLog('info');
  const app = Fastify({ loggerInstance: captured.log, disableRequestLogging: true });
  await app.register(healthRoutes({ kind: 'postgres', ping: () => Promise.reject(failure) }));
  try {
    const res = await app.inject({ url: '/readyz' });
    return { res, entries: captured.entries(), text: captured.text() };
  } finally {
    await app.close();
  }
}

const withCode = (message: string, code: string) => Object.assign(new Error(message), { code });

test('/readyz with the database out of reach: 503 with Retry-After, and a warning with the scrubbed error, not an error', async () => {
  const { res, entries, text } = await readyzWhile(withCode('connect ECONNREFUSED 10.1.2.3:5432', 'ECONNREFUSED'));
  assert.equal(res.statusCode, 503);
  assert.equal(res.headers['retry-after'], '30');
  assert.deepEqual(res.json(), { error: 'The database is not reachable' });
  assert.deepEqual(
    entries.filter((e) => (e.level as number) >= 40).map((e) => [e.level, e.msg, (e.database as { code?: string }).code]),
    [[40, 'the database is not reachable: not ready, answered 503', 'ECONNREFUSED']],
  );
  assert.ok(!text.includes('10.1.2.3'), 'the driver message (the server address) stays out of the log');
});

test('/readyz failing for another reason (a password changed): 503 too, logged as an error, scrubbed', async () => {
  const { res, entries, text } = await readyzWhile(withCode('password authentication failed for user "imagemedix"', '28P01'));
  assert.equal(res.statusCode, 503);
  const logged = entries.filter((e) => (e.level as number) >= 40);
  assert.deepEqual(
    logged.map((e) => [e.level, e.msg, (e.database as { code?: string }).code]),
    [[50, 'readiness check failed', '28P01']],
  );
  assert.ok(!text.includes('imagemedix"'), 'the driver message stays out of the log');
});
