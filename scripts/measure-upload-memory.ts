/**
 * Peak memory of the API process while it takes one large upload (docs/benchmarks/ingest.md,
 * "Large uploads"): starts `src/server.ts` on PGlite in a temporary DATA_DIR, uploads one warm-up
 * slice and then an uncompressed DICOM series of --mb MB from a file on disk (the client never
 * holds it), and reads the server's resident set from /proc: VmRSS before the large upload,
 * VmHWM (its peak) after it.
 *
 *   npx tsx scripts/measure-upload-memory.ts [--mb 200] [--max-upload-mb 256] [--storage local|s3]
 *
 * `--storage s3` runs s3rver (an S3-compatible server, in this script's process) on loopback
 * and points the server at it.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import S3rver from 's3rver';
import { createTokenService } from '../src/auth/tokens.js';
import { apiOnlyEnv, freePort, machineLine, startProcess, stopProcess, waitForHttp } from '../src/bench/support.js';
import { syntheticImage } from '../src/imaging/testing/dicom-writer.js';
import { openDatabase } from '../src/platform/db/index.js';
import { createUser } from '../src/users/service.js';

const { values } = parseArgs({
  options: {
    mb: { type: 'string', default: '200' },
    'max-upload-mb': { type: 'string', default: '256' },
    storage: { type: 'string', default: 'local' },
  },
});
const MB = 1024 * 1024;

/** An uncompressed 16-bit series of 512 x 512 frames, about `mb` MB, written to `file`. */
function writeSeries(file: string, mb: number): number {
  const frames = Math.max(1, Math.round((mb * MB) / (512 * 512 * 2)));
  const values = new Uint16Array(512 * 512 * frames);
  for (let i = 0; i < values.length; i++) values[i] = (i * 13) & 0xfff;
  const extra = [
    { tag: 0x00100010, vr: 'PN', value: 'Memory^Probe' },
    { tag: 0x00100020, vr: 'LO', value: 'MEM-PROBE-1' },
  ];
  writeFileSync(file, syntheticImage({ rows: 512, columns: 512, values, frames, extra }));
  return frames;
}

function procStatus(pid: number): { rssMb: number; hwmMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
}

/** POSTs a multipart form whose file part streams from `file`. */
function upload(base: string, token: string, file: string, patientId: string): Promise<{ status: number; body: string }> {
  const boundary = `----memprobe-${randomBytes(8).toString('hex')}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Disposition: form-data; name="patientId"\r\n\r\n${patientId}\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="patientName"\r\n\r\nMemory Probe\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="series.dcm"\r\nContent-Type: application/dicom\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const length = head.length + statSync(file).size + tail.length;
  const url = new URL('/api/scans', base);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: url.hostname,
        port: url.port,
        method: 'POST',
        path: url.pathname,
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': `multipart/form-data; boundary=${boundary}`,
          'content-length': String(length),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString().slice(0, 200) }));
      },
    );
    req.on('error', reject);
    req.write(head);
    const stream = createReadStream(file);
    stream.on('error', reject);
    stream.on('end', () => req.end(tail));
    stream.pipe(req, { end: false });
  });
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'imagemedix-upload-memory-'));
const dataDir = path.join(dir, 'data');
const jwtSecret = randomBytes(32).toString('hex');
let child: ReturnType<typeof startProcess> | null = null;
let s3: S3rver | null = null;
try {
  let s3Env: Record<string, string> = {};
  if (values.storage === 's3') {
    const bucket = 'imagemedix-memory';
    s3 = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory: path.join(dir, 's3'), configureBuckets: [{ name: bucket, configs: [] }] });
    const { port } = await s3.run();
    s3Env = {
      S3_BUCKET: bucket,
      S3_ENDPOINT: `http://127.0.0.1:${port}`,
      S3_ACCESS_KEY_ID: 'S3RVER',
      S3_SECRET_ACCESS_KEY: 'S3RVER',
      S3_FORCE_PATH_STYLE: 'true',
    };
  }
  const file = path.join(dir, 'series.dcm');
  const frames = writeSeries(file, Number(values.mb));
  const size = statSync(file).size;
  const database = await openDatabase({ databaseUrl: null, dataDir });
  const doctor = await createUser(database.db, { email: 'memory@bench.test', password: 'bench-Lantern-orbit-71-quartz', name: 'Memory', role: 'doctor' });
  await database.close();
  const token = await createTokenService(new TextEncoder().encode(jwtSecret), '12h').issue(doctor);
  const port = await freePort();
  const machine = machineLine();
  child = startProcess('server', {
    ...apiOnlyEnv({ port, dataDir, jwtSecret }),
    MAX_UPLOAD_MB: values['max-upload-mb'],
    ...s3Env,
  });
  const base = `http://127.0.0.1:${port}`;
  await waitForHttp(`${base}/healthz`, 180_000, child);
  const small = path.join(dir, 'small.dcm');
  writeSeries(small, 0.5);
  const warm = await upload(base, token, small, 'MEM-WARM');
  if (warm.status !== 201) throw new Error(`warm-up upload: ${warm.status} ${warm.body}`);
  const before = procStatus(child.pid!);
  const started = performance.now();
  const res = await upload(base, token, file, 'MEM-PROBE-1');
  const seconds = (performance.now() - started) / 1000;
  const after = procStatus(child.pid!);
  console.log(machine);
  console.log(
    `${values.storage} storage: upload of ${(size / MB).toFixed(1)} MB (${frames} frames of 512x512x16 bit), MAX_UPLOAD_MB=${values['max-upload-mb']}: ` +
      `HTTP ${res.status} in ${seconds.toFixed(2)} s (${(size / MB / seconds).toFixed(0)} MB/s); ` +
      `server RSS before ${before.rssMb.toFixed(0)} MB (peak so far ${before.hwmMb.toFixed(0)} MB), ` +
      `peak during ${after.hwmMb.toFixed(0)} MB (+${(after.hwmMb - before.rssMb).toFixed(0)} MB), after ${after.rssMb.toFixed(0)} MB`,
  );
  if (res.status !== 201) console.log(res.body);
} finally {
  if (child) await stopProcess(child);
  await s3?.close();
  rmSync(dir, { recursive: true, force: true });
}
