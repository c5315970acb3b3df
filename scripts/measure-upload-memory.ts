/**
 * Peak memory of the API process while it takes one large upload (docs/benchmarks/ingest.md,
 * "Large uploads", and docs/benchmarks/uploads.md): starts `src/server.ts` on PGlite in a
 * temporary DATA_DIR, uploads one warm-up slice and then one file of about --mb MB from disk (the
 * client never holds it), and reads the server's resident set from /proc: VmRSS before the
 * large upload, VmHWM (its peak) after it.
 *
 *   npx tsx scripts/measure-upload-memory.ts [--mb 200] [--max-upload-mb 256] [--storage local|s3] [--kind dicom]
 *
 * --kind: what the file is.
 *   dicom              uncompressed series of 512 x 512 x 16-bit frames (the default)
 *   dicom-long-header  the same with a 3 MB private element before the pixel data
 *   dicom-jpegls       multi-frame JPEG-LS: the shared set's CR frame (cr_chest/RG1_JLSN.dcm) repeated
 *   dicom-deflated     deflated explicit little endian series of noise (deflate cannot shrink it)
 *   jpeg, png          one image of noise, about --mb MB as a file (MAX_IMAGE_PIXELS raised to fit)
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
import sharp from 'sharp';
import { parseDicomBytes } from '../src/imaging/dicom/parse.js';
import { syntheticImage, writeDicom } from '../src/imaging/testing/dicom-writer.js';
import { sharedDicom } from '../src/imaging/testing/paths.js';
import { openDatabase } from '../src/platform/db/index.js';
import { createUser } from '../src/users/service.js';

const { values } = parseArgs({
  options: {
    mb: { type: 'string', default: '200' },
    'max-upload-mb': { type: 'string', default: '256' },
    storage: { type: 'string', default: 'local' },
    kind: { type: 'string', default: 'dicom' },
  },
});
const KINDS = ['dicom', 'dicom-long-header', 'dicom-jpegls', 'dicom-deflated', 'jpeg', 'png'] as const;
type Kind = (typeof KINDS)[number];
if (!(KINDS as readonly string[]).includes(values.kind)) throw new Error(`--kind must be one of ${KINDS.join(', ')}`);
const kind = values.kind as Kind;
const MB = 1024 * 1024;

const PATIENT = [
  { tag: 0x00100010, vr: 'PN', value: 'Memory^Probe' },
  { tag: 0x00100020, vr: 'LO', value: 'MEM-PROBE-1' },
];

/** An uncompressed 16-bit series of 512 x 512 frames, about `mb` MB, written to `file`. */
function writeSeries(file: string, mb: number, longHeader = false): string {
  const frames = Math.max(1, Math.round((mb * MB) / (512 * 512 * 2)));
  const values = new Uint16Array(512 * 512 * frames);
  for (let i = 0; i < values.length; i++) values[i] = (i * 13) & 0xfff;
  const extra = [...PATIENT, ...(longHeader ? [{ tag: 0x00091010, vr: 'OB', value: new Uint8Array(3 * MB) }] : [])];
  writeFileSync(file, syntheticImage({ rows: 512, columns: 512, values, frames, extra }));
  return `${frames} frames of 512x512x16 bit${longHeader ? ', 3 MB private element before the pixel data' : ''}`;
}

/** A multi-frame JPEG-LS file: the shared CR image's codestream as every frame, one fragment each. */
function writeJpegLs(file: string, mb: number): string {
  const sample = sharedDicom('cr_chest/RG1_JLSN.dcm');
  const pixelData = parseDicomBytes(sample, { maxInflatedBytes: 0 }).dataSet.elements.x7fe00010!;
  const codestream = Buffer.concat((pixelData.fragments ?? []).map((f) => sample.subarray(f.position, f.position + f.length)));
  const frames = Math.max(1, Math.round((mb * MB) / codestream.length));
  writeFileSync(
    file,
    writeDicom({
      transferSyntaxUid: '1.2.840.10008.1.2.4.80',
      elements: [
        ...PATIENT,
        { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.1' },
        { tag: 0x00080060, vr: 'CS', value: 'CR' },
        { tag: 0x00280002, vr: 'US', value: [1] },
        { tag: 0x00280004, vr: 'CS', value: 'MONOCHROME1' },
        { tag: 0x00280008, vr: 'IS', value: String(frames) },
        { tag: 0x00280010, vr: 'US', value: [1955] },
        { tag: 0x00280011, vr: 'US', value: [1841] },
        { tag: 0x00280100, vr: 'US', value: [16] },
        { tag: 0x00280101, vr: 'US', value: [15] },
        { tag: 0x00280102, vr: 'US', value: [14] },
        { tag: 0x00280103, vr: 'US', value: [0] },
      ],
      pixelData: {
        fragments: Array.from({ length: frames }, () => codestream),
        offsets: Array.from({ length: frames }, (_, i) => i * (codestream.length + (codestream.length % 2) + 8)),
      },
    }),
  );
  return `${frames} JPEG-LS frames of 1841x1955 (${(codestream.length / MB).toFixed(1)} MB each)`;
}

function writeDeflated(file: string, mb: number): string {
  const frames = Math.max(1, Math.round((mb * MB) / (512 * 512 * 2)));
  const values = new Uint16Array(randomBytes(512 * 512 * frames * 2).buffer);
  writeFileSync(file, syntheticImage({ rows: 512, columns: 512, values, frames, extra: PATIENT, transferSyntaxUid: '1.2.840.10008.1.2.1.99' }));
  return `${frames} deflated frames of 512x512x16 bit noise`;
}

/** A JPEG or PNG of noise about `mb` MB as a file (noise does not compress). */
async function writeRaster(file: string, mb: number, format: 'jpeg' | 'png'): Promise<string> {
  // Bytes per pixel of grey noise as a file: JPEG quality 100 about 1, PNG about 2.6 (filters do not help).
  const side = Math.round(Math.sqrt((mb * MB) / (format === 'jpeg' ? 1 : 2.6)));
  const raw = sharp(randomBytes(side * side), { raw: { width: side, height: side, channels: 1 }, limitInputPixels: false });
  await (format === 'jpeg' ? raw.jpeg({ quality: 100 }) : raw.png({ compressionLevel: 1 })).toFile(file);
  return `${side}x${side} grey ${format.toUpperCase()} of noise`;
}

async function writeProbe(file: string, mb: number): Promise<string> {
  switch (kind) {
    case 'dicom':
      return writeSeries(file, mb);
    case 'dicom-long-header':
      return writeSeries(file, mb, true);
    case 'dicom-jpegls':
      return writeJpegLs(file, mb);
    case 'dicom-deflated':
      return writeDeflated(file, mb);
    case 'jpeg':
    case 'png':
      return writeRaster(file, mb, kind);
  }
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
  const file = path.join(dir, 'probe.bin');
  const described = await writeProbe(file, Number(values.mb));
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
    // Room for the noise images' pixels: the default 50 megapixels is below a 200 MB JPEG's.
    MAX_IMAGE_PIXELS: '1000000000',
    // And time: before streaming checked them by decoding whole, slow on a loaded machine.
    DECODE_TIMEOUT_MS: '120000',
    ...s3Env,
  });
  const base = `http://127.0.0.1:${port}`;
  await waitForHttp(`${base}/healthz`, 180_000, child);
  const small = path.join(dir, 'small.dcm');
  writeSeries(small, 0.5);
  // The patient its header names: a DICOM header naming another patient is refused (409).
  const warm = await upload(base, token, small, 'MEM-PROBE-1');
  if (warm.status !== 201) throw new Error(`warm-up upload: ${warm.status} ${warm.body}`);
  const before = procStatus(child.pid!);
  const started = performance.now();
  const res = await upload(base, token, file, 'MEM-PROBE-1');
  const seconds = (performance.now() - started) / 1000;
  const after = procStatus(child.pid!);
  console.log(machine);
  console.log(
    `${values.storage} storage, ${kind}: upload of ${(size / MB).toFixed(1)} MB (${described}), MAX_UPLOAD_MB=${values['max-upload-mb']}: ` +
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
