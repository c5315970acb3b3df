/**
 * The sweep of stored files whose scan has no row (an upload answered 503 that was in fact not
 * committed): such files older than the age go, on local disk and S3; a committed scan's files,
 * a younger orphan, anything outside the layout, and everything when the database does not
 * answer, stay.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import S3rver from 's3rver';
import { createTestApp, type TestApp } from '../../test/helpers/app.js';
import type { Db } from '../platform/db/index.js';
import { createLocalStorage, createS3Storage, type Storage } from '../platform/storage/index.js';
import { FIXTURES, uploadRequest } from './test-support.js';
import { scanFileKey } from './stored-files.js';
import { scanIdOfFileKey, sweepOrphanFilesJob } from './sweep-orphan-files.job.js';

const log = pino({ level: 'silent' });
const HOUR = 3_600_000;
const JPEG = readFileSync(path.join(FIXTURES, 'images/brain-glioma-1.jpg'));

describe('sweep of stored files without a scan', () => {
  let t: TestApp;
  /** A committed scan: its row and its stored original. */
  let committed: { id: string; originalKey: string };
  before(async () => {
    t = await createTestApp('pglite');
    const doctor = await t.user();
    const up = await t.app.inject(uploadRequest(doctor, { data: JPEG, fields: { patientId: `SW-${Date.now()}`, patientName: 'Sweep Test', scanType: 'brain-mri' } }));
    assert.equal(up.statusCode, 201, up.body);
    const id = up.json<{ _id: string }>()._id;
    committed = { id, originalKey: scanFileKey(id, 'original.jpg') };
  });
  after(() => t.close());

  const run = (db: Db, storage: Storage, now = Date.now()) =>
    sweepOrphanFilesJob({ db, storage, ageHours: 24, now: () => now }).handler({}, { jobId: 'j', attempt: 1, log });

  test('local disk: an orphan older than the age goes; the committed scan, a young orphan and other names stay; a failed query removes nothing', async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'imagemedix-orphans-'));
    try {
      const storage = createLocalStorage(root);
      const now = Date.now();
      const file = async (key: string, ageHours: number) => {
        await storage.put(key, Buffer.from('bytes'), 'application/octet-stream');
        const at = new Date(now - ageHours * HOUR);
        utimesSync(path.join(root, key), at, at);
        return key;
      };
      const orphan = randomUUID();
      const young = randomUUID();
      const keys = {
        committedOriginal: await file(committed.originalKey, 72),
        committedImage: await file(scanFileKey(committed.id, 'image.png'), 72),
        orphanOriginal: await file(scanFileKey(orphan, 'original.dcm'), 25),
        orphanImage: await file(scanFileKey(orphan, 'image.png'), 25),
        youngOrphan: await file(scanFileKey(young, 'original.jpg'), 23),
        // Not the layout's: another shard's folder, an upper-case id, a name without an id.
        wrongShard: await file(`scans/${orphan.startsWith('00') ? '01' : '00'}/${orphan}.original.dcm`, 72),
        upperCase: await file(`scans/${orphan.slice(0, 2)}/${orphan.toUpperCase()}.original.dcm`, 72),
        notes: await file(`scans/${orphan.slice(0, 2)}/notes.txt`, 72),
      };
      // Another folder a key could name but the layout does not use: never listed.
      writeFileSync(path.join(root, 'scans', 'README'), 'x');

      // The database does not answer: nothing goes, and the job fails (pg-boss retries it).
      const down = { select: () => { throw new Error('Connection terminated unexpectedly'); } } as unknown as Db;
      await assert.rejects(run(down, storage, now), /Connection terminated/);
      for (const key of Object.values(keys)) assert.ok(existsSync(path.join(root, key)), `${key} kept while the database is down`);

      await run(t.database.db, storage, now);
      const gone = Object.entries(keys)
        .filter(([, key]) => !existsSync(path.join(root, key)))
        .map(([name]) => name);
      assert.deepEqual(gone, ['orphanOriginal', 'orphanImage']);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test('S3: the same sweep through the bucket listing, under the key prefix only', async () => {
    const s3dir = mkdtempSync(path.join(tmpdir(), 'imagemedix-orphans-s3-'));
    const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: s3dir, configureBuckets: [{ name: 'b', configs: [] }] });
    const { port } = await server.run();
    try {
      const config = { bucket: 'b', region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', forcePathStyle: true };
      const storage = createS3Storage({ ...config, prefix: 'site-a/' });
      const otherSite = createS3Storage({ ...config, prefix: '' });
      const orphan = randomUUID();
      const orphanKey = scanFileKey(orphan, 'original.dcm');
      await storage.put(committed.originalKey, Buffer.from('bytes'), 'image/jpeg');
      await storage.put(orphanKey, Buffer.from('bytes'), 'application/dicom');
      // The same key outside the prefix is another site's: not listed, never removed.
      await otherSite.put(orphanKey, Buffer.from('bytes'), 'application/dicom');

      await run(t.database.db, storage, Date.now() + 23 * HOUR);
      assert.ok(await storage.exists(orphanKey), 'younger than the age: kept');

      await run(t.database.db, storage, Date.now() + 25 * HOUR);
      assert.equal(await storage.exists(orphanKey), false, 'the orphan is removed');
      assert.ok(await storage.exists(committed.originalKey), "the committed scan's original stays");
      assert.ok(await otherSite.exists(orphanKey), "another prefix's file stays");
    } finally {
      await server.close();
      rmSync(s3dir, { recursive: true, force: true });
    }
  });

  test('only keys of the layout name a scan', () => {
    const id = '3f2a8c1e-0b4d-4e6f-9a1b-2c3d4e5f6a7b';
    assert.equal(scanIdOfFileKey('scans/3f', `scans/3f/${id}.original.dcm`), id);
    assert.equal(scanIdOfFileKey('scans/3f', `scans/3f/${id}.heatmap-a1.png`), id);
    assert.equal(scanIdOfFileKey('scans/00', `scans/00/${id}.original.dcm`), null, 'another shard');
    assert.equal(scanIdOfFileKey('scans/3f', `scans/3f/${id.toUpperCase()}.original.dcm`), null, 'not an id the server makes');
    assert.equal(scanIdOfFileKey('scans/3f', `scans/3f/${id}`), null, 'no file name');
    assert.equal(scanIdOfFileKey('scans/3f', 'scans/3f/notes.txt'), null);
  });
});
