/**
 * Smoke runs of the benchmark commands (seconds, tiny counts): they must keep working as the
 * code moves. Their figures are meaningless here; the real runs are by hand (docs/benchmarks).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../platform/config.js';
import { analysisOutcomes, DEFAULT_POSTGRES_URL, databasesToMeasure } from './support.js';

const run = promisify(execFile);

async function bench(script: string, args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, script), ...args], {
    cwd: REPO_ROOT,
    timeout: 240_000,
    maxBuffer: 10 * 1024 * 1024,
  });
  return stdout;
}

test('bench:api measures the hello-world ceiling and an endpoint', async () => {
  const out = await bench('src/bench/api-cli.ts', ['--db', 'pglite', '--scans', '5', '--duration', '1', '--connections', '2', '--endpoints', 'me,list']);
  assert.match(out, /\| Fastify hello-world \(ceiling\) \| `\/` \| \d+ \|/);
  assert.match(out, /\| pglite: list \| `\/api\/scans\?limit=10` \| \d+ \| \d+ \| \d+ \| 0 \|/);
});

test('bench:api --write-rate reads the list while uploads go on, and says the write rate achieved', async () => {
  const out = await bench('src/bench/api-cli.ts', ['--db', 'pglite', '--scans', '5', '--duration', '2', '--connections', '2', '--endpoints', 'list', '--write-rate', '5']);
  assert.match(out, /5 uploads\/s offered meanwhile \(mixed\)/);
  const row = /\| pglite: list \| `\/api\/scans\?limit=10` \| \d+ \| \d+ \| \d+ \| 0 \| 5\/s offered, ([\d.]+)\/s done \(0 failed, \d+ skipped\), upload p50 \d+ ms, p99 \d+ ms \|/.exec(out);
  assert.ok(row, out);
  assert.ok(Number(row[1]) > 0, 'no upload succeeded while the list was read');
});

test('bench:big --write-rate uploads as the doctor measured while each row is read', async (t) => {
  if (!(await databasesToMeasure('postgres', DEFAULT_POSTGRES_URL)).length) return t.skip('PostgreSQL is not reachable');
  const out = await bench('src/bench/big-cli.ts', ['--scans', '50', '--doctors', '3', '--duration', '1', '--connections', '2', '--write-rate', '4']);
  assert.match(out, /Mixed: 4 DICOM uploads\/s offered/);
  assert.match(out, /\| doctor \| list `\/api\/scans\?limit=10` \| \d+ \| \d+ \| \d+ \| \d+ \| 0 \| 4\/s offered, [\d.]+\/s done \(0 failed, \d+ skipped\)/);
});

test('bench:ingest uploads generated DICOM files (Orthanc off)', async () => {
  const out = await bench('src/bench/ingest-cli.ts', ['--db', 'pglite', '--files', '4', '--clients', '2', '--orthanc', 'off']);
  // The API document's multipart form, and the file as the whole body (application/dicom).
  assert.match(out, /\| ImageMedix \(pglite, multipart\) \| [\d.]+ \| \d+ \| \d+ \| 0 \| [\d.]+ \| [\d.]+ \| - \|/);
  assert.match(out, /\| ImageMedix \(pglite, DICOM body\) \| [\d.]+ \| \d+ \| \d+ \| 0 \| [\d.]+ \| [\d.]+ \| - \|/);
});

test('bench:ingest sends Orthanc the bodies ImageMedix is sent (the DICOM file as the whole body too), storing in --storage-dir', async (t) => {
  if (!['/usr/sbin/Orthanc', '/usr/bin/Orthanc'].some((b) => existsSync(b))) return t.skip('Orthanc is not installed (apt-get install orthanc)');
  const dir = mkdtempSync(path.join(tmpdir(), 'imagemedix-bench-storage-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const out = await bench('src/bench/ingest-cli.ts', ['--db', 'pglite', '--files', '4', '--clients', '2', '--orthanc', 'auto', '--body', 'dicom', '--storage-dir', dir]);
  assert.match(out, new RegExp(`the servers' files in ${dir} \\(\\w+\\)`));
  for (const run of ['first', 'again']) assert.match(out, new RegExp(`\\| Orthanc \\(${run}, DICOM body\\) \\| [\\d.]+ \\| \\d+ \\| \\d+ \\| 0 \\|`));
  assert.match(out, /\| ImageMedix \(pglite, DICOM body\) \| [\d.]+ \| \d+ \| \d+ \| 0 \|/);
  assert.doesNotMatch(out, /multipart/);
  assert.deepEqual(readdirSync(dir), [], 'both servers removed their folders');
});

test('bench:ingest warms each server with one upload of the body it then measures', async (t) => {
  // A stand-in for Orthanc's POST /instances (given by URL: one instance takes every body in turn).
  const received: string[] = [];
  const orthanc = createServer((req, res) => {
    if (req.method === 'POST') received.push(String(req.headers['content-type']).split(';')[0]!);
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  await new Promise<void>((resolve) => orthanc.listen(0, '127.0.0.1', resolve));
  t.after(() => orthanc.close());
  const url = `http://127.0.0.1:${(orthanc.address() as AddressInfo).port}`;
  await bench('src/bench/ingest-cli.ts', ['--db', 'pglite', '--files', '3', '--clients', '1', '--orthanc', url]);
  // First and again, each: one warm-up and the 3 measured files of the form, then of the DICOM body.
  const run = [...Array<string>(4).fill('multipart/form-data'), ...Array<string>(4).fill('application/dicom')];
  assert.deepEqual(received, [...run, ...run]);
});

test('bench:ingest --warmup sends its own uploads first and leaves them out of the figures', async () => {
  const out = await bench('src/bench/ingest-cli.ts', ['--db', 'pglite', '--files', '4', '--clients', '2', '--orthanc', 'off', '--body', 'multipart', '--warmup', '6']);
  assert.match(out, /4 DICOM files of \d+ bytes .*, after 6 warm-up uploads to each server/);
  assert.match(out, /\| ImageMedix \(pglite, multipart\) \| [\d.]+ \| \d+ \| \d+ \| 0 \| [\d.]+ \| [\d.]+ \| - \|/);
  assert.match(out, /- ImageMedix \(pglite, multipart\), warm-up: 6 files, [\d.]+ files\/s, 0 failed, server CPU [\d.]+ ms\/file/);
});

test('bench:ingest --apis 2 uploads through two API processes on PostgreSQL, and refuses PGlite', async (t) => {
  await assert.rejects(bench('src/bench/ingest-cli.ts', ['--db', 'pglite', '--apis', '2', '--files', '2', '--orthanc', 'off']), (err: { code?: number; stderr?: string }) => {
    assert.equal(err.code, 2);
    assert.match(err.stderr ?? '', /--apis 2 or more needs --db postgres/);
    return true;
  });
  if (!(await databasesToMeasure('postgres', DEFAULT_POSTGRES_URL)).length) return t.skip('PostgreSQL is not reachable');
  const out = await bench('src/bench/ingest-cli.ts', ['--db', 'postgres', '--apis', '2', '--files', '4', '--clients', '2', '--orthanc', 'off', '--body', 'multipart']);
  assert.match(out, /\| ImageMedix \(postgres, multipart, 2 API processes\) \| [\d.]+ \| \d+ \| \d+ \| 0 \| [\d.]+ \| [\d.]+ \| [\d.]+ \|/);
});

test('bench:pipeline in idle mode analyses scans one at a time', async () => {
  const out = await bench('src/analysis/bench-cli.ts', ['--db', 'pglite', '--mode', 'idle', '--scans', '2']);
  assert.match(out, /pglite, idle, one scan at a time: 2 scans, upload response p50 \d+ ms, upload-to-completed p50 \d+ ms/);
});

test('bench:pipeline --apis 2 --workers 1 analyses a burst uploaded through two API processes to a worker process', async (t) => {
  if (!(await databasesToMeasure('postgres', DEFAULT_POSTGRES_URL)).length) return t.skip('PostgreSQL is not reachable');
  const out = await bench('src/analysis/bench-cli.ts', ['--db', 'postgres', '--apis', '2', '--workers', '1', '--scans', '4']);
  assert.match(out, /postgres \(2 API processes \+ 1 worker process\): 4 scans in [\d.]+ s .*refused 0, failed 0/);
});

test('a benchmark counts a refused image apart from a failed analysis', () => {
  const rows = [
    { status: 'completed', refusalReason: null },
    { status: 'failed', refusalReason: 'The image does not resemble the chest X-ray images this model was trained on' },
    { status: 'failed', refusalReason: null },
    { status: 'failed', refusalReason: null },
  ];
  assert.deepEqual(analysisOutcomes(rows), { completed: 1, refused: 1, failed: 2 });
});
