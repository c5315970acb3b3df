/**
 * The server builds its app with `compileSerializersAhead` (app.ts): the Ajv checks that
 * fast-json-stringify runs to pick a union's branch (every Nullable field of a scan) are compiled
 * before the port opens, so a fresh process's first scan list and detail compile nothing. Ajv
 * compiles every schema in one method, `_compileSchemaEnv`; it is private, so reached by name,
 * and the control below (an app built without the option) shows the count can be more than 0.
 */
import assert from 'node:assert/strict';
import { mock, test } from 'node:test';
import { Ajv } from 'ajv';
import { sql } from 'drizzle-orm';
import type { FastifyInstance } from 'fastify';
import { createTestApp, uniqueId, type TestUser } from '../../../test/helpers/app.js';
import { buildApp } from '../../app.js';
import { seedScans } from '../../bench/seed.js';

/** Ajv schemas compiled while the first list page and the first scan detail are answered. */
async function compiledByFirstAnswers(app: FastifyInstance, doctor: TestUser, scanId: string): Promise<number> {
  const compile = mock.method(Ajv.prototype as unknown as { _compileSchemaEnv: (sch: unknown) => unknown }, '_compileSchemaEnv');
  try {
    for (const url of ['/api/scans?limit=10', `/api/scans/${scanId}`]) {
      const res = await app.inject({ url, headers: doctor.auth });
      assert.equal(res.statusCode, 200, res.body);
    }
    return compile.mock.callCount();
  } finally {
    compile.mock.restore();
  }
}

test("a server's first scan list and detail compile no schema: their checks were compiled as it started", async () => {
  const t = await createTestApp('pglite', { build: () => ({ compileSerializersAhead: true }) });
  try {
    const doctor = await t.user();
    // Seeded scans carry a finding and null fields: the answers go through their unions' checks.
    await seedScans(t.database.db, { doctorId: doctor.id, patients: 2, scans: 20, patientPrefix: `${uniqueId('AHEAD')}-` });
    const picked = await t.database.db.execute(sql`select id from scans where doctor_id = ${doctor.id} and status = 'completed' limit 1`);
    const scanId = ((Array.isArray(picked) ? picked : (picked as { rows: unknown[] }).rows) as { id: string }[])[0]!.id;

    assert.equal(await compiledByFirstAnswers(t.app, doctor, scanId), 0);

    const lazy = await buildApp(t.ctx, { logger: false });
    try {
      await lazy.ready();
      assert.ok((await compiledByFirstAnswers(lazy, doctor, scanId)) > 0, 'without the option the first answers compile their checks');
    } finally {
      await lazy.close();
    }
  } finally {
    await t.close();
  }
});
