/**
 * Small originals kept in the database (src/scans/originals.ts): a small upload leaves no file
 * of its own, its original reads back byte for byte through storage after the whole stack has
 * restarted on the same database, and the worker's analysis and the pixel window read it; a
 * large upload still goes to the file store, as every upload does with the setting off; and a
 * deleted scan takes its bytes with it.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import pino from 'pino';
import sharp from 'sharp';
import { buildApp } from '../app.js';
import { analyzeScanJob, type Analyzer } from '../analysis/analyze.job.js';
import { latestAnalysisOf } from '../analysis/repository.js';
import { syntheticImage } from '../imaging/testing/dicom-writer.js';
import { decodeOriginalPixels } from '../imaging/index.js';
import { loadConfig } from '../platform/config.js';
import { openDatabase, type Database } from '../platform/db/index.js';
import { scanOriginals, scans } from '../platform/db/schema.js';
import { createServerDatabase } from '../platform/db/server-database.js';
import { createRuntime } from '../runtime.js';
import { createUser } from '../users/service.js';
import { databaseKinds, type DbKind } from '../../test/helpers/db.js';
import { IN_MEMORY_BYTES } from './upload.js';

const ADMIN_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** A brain MR instance of `size` x `size` 16-bit pixels naming its patient, as a modality sends it. */
function brainMr(size: number, patientId: string): Buffer {
  const values = Array.from({ length: size * size }, (_, i) => (i * 37) & 0xfff);
  return syntheticImage({
    rows: size,
    columns: size,
    values,
    bitsStored: 12,
    extra: [
      { tag: 0x00080060, vr: 'CS', value: 'MR' },
      { tag: 0x00100010, vr: 'PN', value: 'HADDAD^NOOR' },
      { tag: 0x00100020, vr: 'LO', value: patientId },
      { tag: 0x00180015, vr: 'CS', value: 'BRAIN' },
    ],
  });
}

/** Every file under `dir`, relative to it. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort();
}

/**
 * A database that outlives the stacks opened on it: PGlite in a folder on disk, or a database
 * on the PostgreSQL server. `open` connects anew each time, as a restarted process does.
 */
async function lastingDatabase(kind: DbKind): Promise<{ open(): Promise<Database>; drop(): Promise<void> }> {
  if (kind === 'pglite') {
    const dir = mkdtempSync(path.join(tmpdir(), 'imagemedix-originals-db-'));
    return {
      open: () => openDatabase({ databaseUrl: null, dataDir: dir }),
      drop: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const server = await createServerDatabase(ADMIN_URL, 'imagemedix_test');
  return { open: () => openDatabase({ databaseUrl: server.url, dataDir: null, poolSize: 5 }), drop: () => server.drop() };
}

/** The API and its runtime on `database`, files under `dataDir`, as `npm start` builds them. */
async function startStack(database: Database, dataDir: string, env: Record<string, string> = {}) {
  const config = loadConfig({
    DATA_DIR: dataDir,
    JWT_SECRET: 'x'.repeat(64),
    RATE_LIMIT_MAX: '100000',
    LOG_LEVEL: 'silent',
    PUBLIC_URL: 'http://imagemedix.test',
    MAX_UPLOAD_MB: '8',
    ...env,
  });
  const runtime = await createRuntime(config, database, { log: pino({ level: 'silent' }), supervise: false });
  const app = await buildApp(runtime.ctx, { logger: false });
  await app.ready();
  return {
    app,
    ctx: runtime.ctx,
    async stop() {
      await app.close();
      await runtime.stop();
    },
  };
}

type Stack = Awaited<ReturnType<typeof startStack>>;

async function userOf(stack: Stack, role: 'doctor' | 'admin' = 'doctor') {
  const row = await createUser(stack.ctx.db, {
    email: `user-${randomUUID()}@hospital.test`,
    password: `pw-${randomBytes(8).toString('hex')}`,
    name: 'Dr Test',
    role,
  });
  return { id: row.id, auth: { authorization: `Bearer ${await stack.ctx.tokens.issue(row)}` } };
}

async function upload(stack: Stack, auth: Record<string, string>, body: Buffer): Promise<{ _id: string }> {
  const res = await stack.app.inject({ method: 'POST', url: '/api/scans', headers: { 'content-type': 'application/dicom', ...auth }, payload: body });
  assert.equal(res.statusCode, 201, res.body);
  return res.json();
}

/** The scan's original as every reader gets it: through storage, by the key in its row. */
async function originalOf(stack: Stack, scanId: string): Promise<{ key: string; bytes: Buffer }> {
  const [row] = await stack.ctx.db.select({ key: scans.originalKey }).from(scans).where(eq(scans.id, scanId));
  assert.ok(row, `scan ${scanId} has a row`);
  return { key: row.key, bytes: await stack.ctx.storage.get(row.key) };
}

/**
 * Runs the scan's queued analysis through the real job handler, as the worker does: a DICOM
 * original is rendered (read through storage, windowed) and the model given its pixels.
 * Answers the size of the image the model was given.
 */
async function analyse(stack: Stack, scanId: string): Promise<{ width: number; height: number }> {
  const seen: { size?: { width: number; height: number } } = {};
  const analyzer: Analyzer = {
    async analyze(_scanType, image, onStage) {
      const shown = 'pixels' in image ? image.pixels : 'png' in image ? await sharp(image.png).metadata() : await decodeOriginalPixels(image.original, { maxPixels: stack.ctx.config.maxImagePixels });
      seen.size = { width: shown.width ?? 0, height: shown.height ?? 0 };
      await onStage('inference');
      return {
        refused: false,
        model: { id: 'brain-mri', version: '1.0.0' },
        result: {
          scanType: 'brain-mri',
          hasTumor: false,
          tumorType: null,
          confidence: 0.9,
          probabilities: { glioma: 0.03, meningioma: 0.03, notumor: 0.9, pituitary: 0.04 },
          tumorLocation: null,
          operatingPoint: 'argmax',
          calibration: 'model',
          model: { id: 'brain-mri', version: '1.0.0' },
        },
        heatmapMap: { width: 1, height: 1, values: [0] },
        hotRegion: { x: 0, y: 0, width: 1, height: 1 },
      };
    },
  };
  const job = analyzeScanJob({ db: stack.ctx.db, analyzer, renditions: stack.ctx.renditions, events: stack.ctx.events });
  const analysis = await latestAnalysisOf(stack.ctx.db, scanId);
  assert.ok(analysis, 'the upload queued an analysis');
  await job.handler({ scanId, analysisId: analysis.id }, { jobId: analysis.jobId ?? 'test', attempt: 1, log: pino({ level: 'silent' }) });
  assert.ok(seen.size, 'the analyzer ran');
  const [done] = await stack.ctx.db.select({ status: scans.status }).from(scans).where(eq(scans.id, scanId));
  assert.equal(done?.status, 'completed');
  return seen.size;
}

for (const kind of await databaseKinds()) {
  describe(`small originals kept in the database (${kind})`, () => {
    test('a small upload leaves no file; its original reads back byte for byte after a restart, and is analysed; a large one is a file', async () => {
      const lasting = await lastingDatabase(kind);
      const dataDir = mkdtempSync(path.join(tmpdir(), 'imagemedix-originals-'));
      let database = await lasting.open();
      let stack: Stack | null = null;
      try {
        stack = await startStack(database, dataDir);
        const doctor = await userOf(stack);
        const small = brainMr(64, `PT-${randomUUID().slice(0, 8)}`);
        const large = brainMr(1024, `PT-${randomUUID().slice(0, 8)}`);
        assert.ok(small.length < 64 * 1024 && large.length > IN_MEMORY_BYTES, `${small.length} and ${large.length} bytes`);
        const smallScan = await upload(stack, doctor.auth, small);
        // The small one's bytes are in the database, committed with its row: no file of its own.
        assert.deepEqual(await filesUnder(path.join(dataDir, 'files')), []);
        const largeScan = await upload(stack, doctor.auth, large);
        const files = await filesUnder(path.join(dataDir, 'files'));
        assert.deepEqual(files, [`scans/${largeScan._id.slice(0, 2)}/${largeScan._id}.original.dcm`]);

        // The whole stack restarts on the same database: nothing is held in a process.
        await stack.stop();
        stack = null;
        await database.close();
        database = await lasting.open();
        stack = await startStack(database, dataDir);

        const smallOriginal = await originalOf(stack, smallScan._id);
        assert.ok(smallOriginal.key.startsWith('database/'), smallOriginal.key);
        assert.ok(smallOriginal.bytes.equals(small), 'the small original reads back byte for byte');
        assert.ok((await originalOf(stack, largeScan._id)).bytes.equals(large), 'the large original reads back byte for byte');
        assert.ok((await stack.ctx.storage.readRange(smallOriginal.key, 128, 160)).equals(small.subarray(128, 160)));
        assert.equal(await stack.ctx.storage.exists(smallOriginal.key), true);

        // The worker reads it as it reads a file: rendered from it, analysed, completed.
        assert.deepEqual(await analyse(stack, smallScan._id), { width: 64, height: 64 });
        // The viewer's window/level reads the original's pixels.
        const viewer = await userOf(stack);
        const pixels = await stack.app.inject({ method: 'GET', url: `/api/scans/${smallScan._id}/pixels`, headers: doctor.auth });
        assert.equal(pixels.statusCode, 200, pixels.body);
        assert.equal(pixels.headers['x-image-width'], '64');
        assert.equal((await stack.app.inject({ method: 'GET', url: `/api/scans/${smallScan._id}/pixels`, headers: viewer.auth })).statusCode, 404);

        // Deleting the scan (an administrator's act) takes its bytes with it; the large one's file goes as before.
        const admin = await userOf(stack, 'admin');
        for (const scan of [smallScan, largeScan]) {
          const res: { statusCode: number; body: string } = await stack.app.inject({ method: 'DELETE', url: `/api/scans/${scan._id}`, headers: admin.auth });
          assert.equal(res.statusCode, 200, res.body);
        }
        assert.deepEqual(await stack.ctx.db.select().from(scanOriginals).where(eq(scanOriginals.scanId, smallScan._id)), []);
        assert.equal(await stack.ctx.storage.exists(smallOriginal.key), false);
        assert.deepEqual(await filesUnder(path.join(dataDir, 'files', 'scans')), []);
      } finally {
        await stack?.stop();
        await database.close();
        await lasting.drop();
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

    test('ORIGINALS_IN_DATABASE_MAX_KB=0 stores every original as a file, as before', async () => {
      const lasting = await lastingDatabase(kind);
      const dataDir = mkdtempSync(path.join(tmpdir(), 'imagemedix-originals-'));
      const database = await lasting.open();
      let stack: Stack | null = null;
      try {
        stack = await startStack(database, dataDir, { ORIGINALS_IN_DATABASE_MAX_KB: '0' });
        const doctor = await userOf(stack);
        const small = brainMr(64, `PT-${randomUUID().slice(0, 8)}`);
        const scan = await upload(stack, doctor.auth, small);
        assert.deepEqual(await filesUnder(path.join(dataDir, 'files')), [`scans/${scan._id.slice(0, 2)}/${scan._id}.original.dcm`]);
        const original = await originalOf(stack, scan._id);
        assert.ok(original.key.startsWith('scans/'), original.key);
        assert.ok(original.bytes.equals(small));
        assert.deepEqual(await stack.ctx.db.select().from(scanOriginals), []);
        assert.deepEqual(await analyse(stack, scan._id), { width: 64, height: 64 });
      } finally {
        await stack?.stop();
        await database.close();
        await lasting.drop();
        rmSync(dataDir, { recursive: true, force: true });
      }
    });
  });
}
