/**
 * Deleting a scan or a patient reads the stored files its rows name inside the deleting
 * transaction: one connection, so its queries go one after another. Sent at once they only
 * queued in the driver, which warns (and pg 9 refuses): "client is already executing a query".
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { useTestApp, type TestApp, type TestUser } from '../../test/helpers/app.js';
import { databaseKinds } from '../../test/helpers/db.js';
import { FIXTURES, uploadRequest } from './test-support.js';

const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));

for (const kind of await databaseKinds()) {
  describe(`deleting a scan or a patient and its stored files (${kind})`, () => {
    let t: TestApp;
    let admin: TestUser;
    useTestApp(kind, {
      async setup(app) {
        t = app;
        admin = await t.user({ role: 'admin' });
      },
    });

    test('removes the rows and files with no query sent while another runs on the transaction', async () => {
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(w.message);
      process.on('warning', onWarning);
      try {
        const patient = await t.patient(admin, { name: 'Noor Haddad' });
        const upload = async () => {
          const res = await t.app.inject(uploadRequest(admin, { data: JPEG, fields: { patientId: patient.patientId } }));
          assert.equal(res.statusCode, 201, res.body);
          return res.json<{ _id: string }>()._id;
        };
        const first = await upload();
        await upload();
        const scan = await t.app.inject({ method: 'DELETE', url: `/api/scans/${first}`, headers: admin.auth });
        assert.equal(scan.statusCode, 200, scan.body);
        assert.equal((await t.app.inject({ url: `/api/scans/${first}`, headers: admin.auth })).statusCode, 404);
        const whole = await t.app.inject({ method: 'DELETE', url: `/api/patients/${patient._id}`, headers: admin.auth });
        assert.equal(whole.statusCode, 200, whole.body);
        assert.equal((await t.app.inject({ url: `/api/patients/${patient._id}`, headers: admin.auth })).statusCode, 404);
        // Warnings are emitted on the next tick.
        await new Promise((resolve) => setImmediate(resolve));
        assert.deepEqual(
          warnings.filter((m) => /already executing a query/.test(m)),
          [],
        );
      } finally {
        process.off('warning', onWarning);
      }
    });
  });
}
