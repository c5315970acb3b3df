/**
 * The sweep of crashed uploads' leftovers: one job per interval whatever the number of
 * processes asking (two queues on one database stand for two processes), and the handler
 * removes only what has been idle longer than the margin.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import S3rver from 's3rver';
import { databaseKinds, openTestDatabase } from '../../test/helpers/db.js';
import { openQueue } from '../platform/queue/index.js';
import { createLocalStorage, createS3Storage, type Storage } from '../platform/storage/index.js';
import { PARTIAL_FOLDER } from '../platform/storage/local.js';
import { sweepPartialUploadsJob } from './sweep-partial-uploads.job.js';
import { scheduleSweeps } from './sweeps.js';

const log = pino({ level: 'silent' });
const MINUTE = 60_000;

describe('sweep of partial uploads', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'imagemedix-sweep-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('removes the leftovers idle longer than the margin, and keeps the younger ones', async () => {
    const partial = path.join(dir, PARTIAL_FOLDER);
    mkdirSync(partial, { recursive: true });
    const now = Date.now();
    const leftover = (name: string, idleMinutes: number) => {
      const file = path.join(partial, `${name}.tmp`);
      writeFileSync(file, 'part of an upload');
      const at = new Date(now - idleMinutes * MINUTE);
      utimesSync(file, at, at);
    };
    leftover('original.dcm.crashed', 90);
    leftover('original.dcm.running', 20);
    const job = sweepPartialUploadsJob({ storage: createLocalStorage(dir), ageMinutes: 60, now: () => now });
    await job.handler({}, { jobId: 'j', attempt: 1, log });
    assert.deepEqual(readdirSync(partial), ['original.dcm.running.tmp']);
  });

  test("also removes what crashes left in the per-scan folders of the layout before the shard folders, never a stored file", async () => {
    const root = mkdtempSync(path.join(tmpdir(), 'imagemedix-sweep-legacy-'));
    try {
      const now = Date.now();
      const file = (key: string, idleMinutes: number) => {
        const at = path.join(root, key);
        mkdirSync(path.dirname(at), { recursive: true });
        writeFileSync(at, 'bytes');
        const t = new Date(now - idleMinutes * MINUTE);
        utimesSync(at, t, t);
      };
      const scan = '3f2a8c1e-0b4d-4e6f-9a1b-2c3d4e5f6a7b';
      const tmpName = (name: string) => `${name}.5e0c7a1f-8b2d-4c3e-9f4a-1b2c3d4e5f60.tmp`;
      // A scan stored under the old layout, days ago, with a crashed rendition write beside it.
      for (const name of ['original.dcm', 'image.png', 'thumbnail.png', 'heatmap-a1.png', 'report-r1.pdf']) file(`scans/${scan}/${name}`, 3 * 24 * 60);
      file(`scans/${scan}/${tmpName('image.png')}`, 90);
      file(`scans/${scan}/${tmpName('original.dcm')}`, 20); // idle less than the margin: may still be written
      file(`scans/${scan}/notes.tmp`, 90); // not a name our writes make
      // A scan under the shard layout, and the partial folder's own leftover.
      file(`scans/3f/${scan}.original.dcm`, 3 * 24 * 60);
      file(`${PARTIAL_FOLDER}/original.dcm.crashed.tmp`, 90);
      const job = sweepPartialUploadsJob({ storage: createLocalStorage(root), ageMinutes: 60, now: () => now });
      await job.handler({}, { jobId: 'j', attempt: 1, log });
      assert.deepEqual(readdirSync(path.join(root, 'scans', scan)).sort(), [
        'heatmap-a1.png',
        'image.png',
        'notes.tmp',
        'original.dcm',
        tmpName('original.dcm'),
        'report-r1.pdf',
        'thumbnail.png',
      ]);
      assert.deepEqual(readdirSync(path.join(root, 'scans', '3f')), [`${scan}.original.dcm`]);
      assert.deepEqual(readdirSync(path.join(root, PARTIAL_FOLDER)), []);
      // A storage that never had the old layout (or no scans folder yet) sweeps as before.
      await job.handler({}, { jobId: 'j', attempt: 1, log });
      const fresh = mkdtempSync(path.join(tmpdir(), 'imagemedix-sweep-empty-'));
      assert.equal(await createLocalStorage(fresh).sweepPartialUploads(new Date(now), { under: 'scans', folder: () => true }), 0);
      rmSync(fresh, { recursive: true, force: true });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test('a store that cannot list unfinished multipart uploads (s3rver) ends the sweep with a warning, not a failed job retried for minutes', async () => {
    const s3dir = mkdtempSync(path.join(tmpdir(), 'imagemedix-sweep-s3-'));
    const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: s3dir, configureBuckets: [{ name: 'b', configs: [] }] });
    const { port } = await server.run();
    try {
      const storage = createS3Storage({
        bucket: 'b',
        region: 'us-east-1',
        endpoint: `http://127.0.0.1:${port}`,
        accessKeyId: 'S3RVER',
        secretAccessKey: 'S3RVER',
        forcePathStyle: true,
        prefix: '',
      });
      const warned: unknown[] = [];
      const spy = pino({ level: 'warn' }, { write: (line: string) => void warned.push(JSON.parse(line)) });
      await sweepPartialUploadsJob({ storage, ageMinutes: 60 }).handler({}, { jobId: 'j', attempt: 1, log: spy });
      assert.equal(warned.length, 1);
      assert.match(String((warned[0] as { reason: string }).reason), /lifecycle rule/);
      // Any other failure still fails the job, so pg-boss retries it.
      const broken = { ...storage, sweepPartialUploads: () => Promise.reject(new Error('connection reset')) } as Storage;
      await assert.rejects(sweepPartialUploadsJob({ storage: broken, ageMinutes: 60 }).handler({}, { jobId: 'j', attempt: 1, log }), /connection reset/);
    } finally {
      await server.close();
      rmSync(s3dir, { recursive: true, force: true });
    }
  });

  for (const kind of ['pglite', 'postgres'] as const) {
    test(`N processes asking for sweeps get one job per interval (${kind})`, async (t) => {
      if (!(await databaseKinds()).includes(kind)) return t.skip('no PostgreSQL server');
      const database = await openTestDatabase(kind);
      const job = sweepPartialUploadsJob({ storage: createLocalStorage(dir), ageMinutes: 60 });
      const queues = [];
      try {
        for (let i = 0; i < (kind === 'pglite' ? 1 : 3); i++) {
          const queue = await openQueue(database, { log, supervise: false });
          queues.push(queue);
          await queue.register([job.name], [job]);
        }
        // Every process asks at start-up, and again a little later in the same interval.
        const asks = await Promise.all([...queues, ...queues].map((queue) => queue.sendThrottled(job, {}, { key: 'sweep', seconds: 3600 })));
        assert.equal(asks.filter(Boolean).length, 1, 'one ask enqueued a job, the others found it there');
        const stops = queues.map((queue) => scheduleSweeps({ queue, job, intervalMinutes: 60, log }));
        await new Promise((r) => setTimeout(r, 200));
        stops.forEach((stop) => stop());
        assert.equal((await queues[0]!.take(job, 10)).length, 1, 'one sweep is queued');
      } finally {
        for (const queue of queues) await queue.stop();
        await database.destroy();
      }
    });
  }
});
