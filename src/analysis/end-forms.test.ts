/**
 * repository.endAnalysis builds its statement once per form and reuses it with new values. Two
 * completions whose statements differ (say, a test's fake beside the queue's own) are two forms:
 * the second must not be run with the first one's text, whose placeholders it cannot fill.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { eq, sql, type SQL } from 'drizzle-orm';
import { patients, scans } from '../platform/db/schema.js';
import { createTestApp, uniqueId, type TestApp } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { seedScans } from '../bench/seed.js';
import * as repo from './repository.js';

/** A completion that writes nothing but answers whether `when` held, through its own placeholder. */
function completion(placeholder: string) {
  return {
    statement: (when: SQL<boolean>): SQL => sql`select ${sql.placeholder(placeholder)}::int as id where (${when})`,
    values: { [placeholder]: 1 },
  };
}

for (const kind of await databaseKinds()) {
  describe(`the end of an analysis with two different job completions (${kind})`, () => {
    let t: TestApp;
    let scanIds: string[];

    before(async () => {
      t = await createTestApp(kind);
      const doctor = await t.user();
      const prefix = `${uniqueId('END')}-`;
      await seedScans(t.database.db, { doctorId: doctor.id, patients: 1, scans: 2, patientPrefix: prefix });
      const rows = await t.database.db
        .select({ id: scans.id })
        .from(scans)
        .innerJoin(patients, eq(patients.id, scans.patientId))
        .where(sql`${patients.patientId} like ${`${prefix}%`}`);
      scanIds = rows.map((r) => r.id);
      assert.equal(scanIds.length, 2);
    });
    after(() => t.close());

    test('each completion runs its own statement: both analyses end and both completions report done', async () => {
      const builders = [completion('firstJob'), completion('secondJob')];
      for (const [i, scanId] of scanIds.entries()) {
        const analysis = await repo.insertAnalysis(t.database.db, { scanId, scanType: 'brain-mri', status: 'active' });
        const ended = await repo.endAnalysis(t.database.db, {
          analysisId: analysis.id,
          analysis: { status: 'completed', progress: 100, completedAt: new Date() },
          scanId,
          scan: { status: 'completed', currentAnalysisId: analysis.id, failureReason: null },
          completeJob: builders[i]!,
        });
        assert.deepEqual(ended, { finished: true, heldBack: false, jobCompleted: true }, `completion ${i + 1}`);
      }
      const statuses = await t.database.db.select({ status: scans.status }).from(scans).where(sql`${scans.id} in ${scanIds}`);
      assert.deepEqual(
        statuses.map((s) => s.status),
        ['completed', 'completed'],
      );
    });
  });
}
