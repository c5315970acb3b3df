/**
 * Request logs: every line a request logs names the request (and, once signed in, the user),
 * whether the level is `info` (Fastify's own request lines) or `warn` (errors only), although
 * the request's logger is only made when something is logged.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { captureLog } from '../../test/helpers/log-capture.js';
import { createTestApp } from '../../test/helpers/app.js';
import { requestLoggerFactory } from './logging.js';

describe('request logs', () => {
  test('at warn, a request logger and its child write their lines, with both bindings, at warn and above only', () => {
    const captured = captureLog('warn');
    const log = requestLoggerFactory(captured.log, { reqId: 'req-7' }, {}).child({ userId: 'u-1' });
    log.info('not written');
    log.debug({ a: 1 }, 'not written');
    assert.equal(log.level, 'warn');
    log.warn({ scan: 's-1' }, 'written');
    log.error('also written');
    const lines = captured.entries();
    assert.deepEqual(
      lines.map((l) => [l.reqId, l.userId, l.msg, l.scan]),
      [
        ['req-7', 'u-1', 'written', 's-1'],
        ['req-7', 'u-1', 'also written', undefined],
      ],
    );
    log.level = 'info';
    log.info('now written');
    assert.equal(captured.entries().at(-1)?.msg, 'now written');
    assert.equal(captured.log.level, 'warn', "the process logger's level is not changed");
  });

  test("at info, each request's lines carry its id, and the user's id once signed in", async () => {
    const captured = captureLog('info');
    const t = await createTestApp('pglite', { log: captured.log });
    try {
      const doctor = await t.user();
      const before = captured.entries().length;
      const me = await t.app.inject({ method: 'GET', url: '/api/auth/me', headers: doctor.auth });
      assert.equal(me.statusCode, 200);
      const created = await t.app.inject({ method: 'POST', url: '/api/patients', headers: doctor.auth, payload: { patientId: 'PT-LOG-1', name: 'Log Patient' } });
      assert.equal(created.statusCode, 201);
      const lines = captured.entries().slice(before);
      const requestLines = lines.filter((l) => l.reqId !== undefined);
      assert.ok(requestLines.length >= 5, `incoming + completed per request and "patient created": ${JSON.stringify(lines)}`);
      assert.deepEqual(lines.filter((l) => l.reqId === undefined), [], 'no request line without its id');
      const ids = new Set(requestLines.map((l) => l.reqId));
      assert.equal(ids.size, 2, 'one id per request');
      const patientLine = requestLines.find((l) => l.msg === 'patient created');
      assert.equal(patientLine?.userId, doctor.id);
      assert.equal(JSON.stringify(lines).includes('Log Patient'), false, 'no patient data in the log');
    } finally {
      await t.close();
    }
  });
});
