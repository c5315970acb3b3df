/**
 * npm run bench:ingest -- [--files 200] [--clients 8] [--db pglite|postgres|both] [--orthanc auto|off|URL]
 *                         [--body both|multipart|dicom] [--apis N] [--warmup N] [--cpu-prof DIR] [--out docs/benchmarks/ingest.md]
 *
 * DICOM ingest side by side with Orthanc in the same run: N small MR files (~10 kB, 64 x 64
 * 16-bit, each its own SOP instance; 20 patients) generated from the shared NEMA MR1 slice,
 * uploaded by 8 clients at once to
 *   - Orthanc, `POST /instances` (store + index in its SQLite), and
 *   - ImageMedix, `POST /api/scans` (check the DICOM header, store the original, index, queue
 *     analysis), as an API-only `npm start` on embedded PGlite and on the PostgreSQL server:
 *     as the API document's multipart form, and (`--body both`, the default) again, on a fresh
 *     database and server, with the file as the whole body (`Content-Type: application/dicom`,
 *     as Orthanc's `POST /instances` takes it), which skips the multipart parsing.
 * Orthanc: `--orthanc auto` starts the Debian package's binary (`apt-get install orthanc`;
 * /usr/sbin/Orthanc) on a free loopback port with its own configuration and a temporary
 * storage folder, and stops it afterwards; `--orthanc http://host:8042` uses a running one.
 * Both get the same bytes, built before the clock starts: for each body measured (`--body`),
 * Orthanc's `POST /instances` is sent what ImageMedix is sent, the multipart form with one
 * `image` part and the file as the whole body (`application/dicom`), each a row of its own,
 * so the client's own work per request is the same for both.
 * --storage-dir DIR (default the OS's temporary folder): where both servers' files go, each in a
 *   temporary folder of its own (Orthanc's storage and SQLite index, ImageMedix's DATA_DIR).
 *   `/dev/shm` (tmpfs) takes the file system's cost out of both, to compare CPU alone; the
 *   product's figure is the one on disk (docs/benchmarks/ingest.md).
 * --apis N (PostgreSQL only): N API-only processes on the same database and storage folder,
 *   each on its own port, the clients spread over them in turn (client c to process c % N),
 *   as the scale-out deployment of docs/deployment.md runs behind a load balancer.
 * --warmup N (default 0): before the measured uploads, every server (each Orthanc and each
 *   ImageMedix run alike) is first sent N more files of the same kind and body, by the same
 *   clients, on a patient set of their own (WARMUP-...), so the measured uploads still create
 *   their patients. They are left out of the figures (the CPU counters are read after them):
 *   a PACS talks to a long-running server, whose JIT has long optimised the upload's code,
 *   while a 200-file run is mostly V8's warm-up (docs/benchmarks/ingest.md, 2026-12-06 16:42).
 *   Their own rate and CPU are printed under the table. Without it ImageMedix gets its one
 *   warm-up upload per process only, the cold figure.
 * Under the table: the p50 latency of each run's first 50 uploads sent and of its last 50, so a
 * cold server's warm-up shows (docs/benchmarks/ingest.md).
 * Each run also reports CPU per upload (user + system, ms) of the client (this process), of
 * the server processes it started (Orthanc, or the API processes) and, on PostgreSQL, of the
 * backends connected to the benchmark's database (PostgreSQL on this machine only).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createTokenService } from '../auth/tokens.js';
import { openDatabase } from '../platform/db/index.js';
import { createServerDatabase } from '../platform/db/server-database.js';
import { createUser } from '../users/service.js';
import { MULTIPART, makeFiles, multipartBodies } from './dicom-files.js';
import {
  SERVER_BENCH_OPTIONS,
  freePort,
  machineLine,
  pct,
  appendFigures,
  databasesToMeasure,
  apiOnlyEnv,
  startProcess,
  stopProcess,
  waitForHttp,
} from './support.js';

const { values } = parseArgs({
  options: {
    ...SERVER_BENCH_OPTIONS,
    files: { type: 'string', default: '200' },
    clients: { type: 'string', default: '8' },
    orthanc: { type: 'string', default: 'auto' },
    apis: { type: 'string', default: '1' },
    body: { type: 'string', default: 'both' },
    warmup: { type: 'string', default: '0' },
    'storage-dir': { type: 'string', default: os.tmpdir() },
  },
});
const N = Number(values.files);
const CLIENTS = Number(values.clients);
const APIS = Number(values.apis);
if (!(Number.isInteger(APIS) && APIS >= 1)) throw new Error('--apis must be 1 or more');
const WARMUP = Number(values.warmup);
if (!(Number.isInteger(WARMUP) && WARMUP >= 0)) throw new Error('--warmup must be 0 or more');
/** How many of a run's first and last uploads its edge latencies are of. */
const EDGE = 50;

/** The warm-up's files: fresh UIDs and their own patients, so none of them is a measured one. */
const warmupFiles = () => makeFiles(WARMUP, { id: 'WARMUP', name: 'WARMUP' });
/** The warm-up runs' own figures, printed under the table (not in it). */
const warmups: Run[] = [];
const STORAGE_DIR = path.resolve(values['storage-dir']);
/** The file system type of a folder, by statfs's magic number, for the result's head line. */
function fileSystemOf(dir: string): string {
  const types: Record<number, string> = { 0x01021994: 'tmpfs', 0xef53: 'ext4', 0x58465342: 'xfs', 0x9123683e: 'btrfs', 0x794c7630: 'overlayfs' };
  return types[statfsSync(dir).type] ?? 'unknown file system';
}
const BODIES = ({ both: ['multipart', 'dicom'], multipart: ['multipart'], dicom: ['dicom'] } as const)[values.body as 'both'];
if (!BODIES) throw new Error('--body must be both, multipart or dicom');
if (APIS > 1 && values.db !== 'postgres') {
  console.error('--apis 2 or more needs --db postgres: PGlite is embedded in its one API process, which no second process can share');
  process.exit(2);
}
/** utime + stime of a process in ms, from /proc (Linux); null elsewhere or once it is gone. */
function processCpuMs(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

const sumCpuMs = (pids: (number | undefined)[]): number | null =>
  pids.reduce<number | null>((sum, pid) => {
    const ms = processCpuMs(pid);
    return sum === null || ms === null ? null : sum + ms;
  }, 0);

interface Run {
  name: string;
  perSecond: number;
  p50: number;
  p99: number;
  failed: number;
  /** p50 latency (ms) of the first and of the last EDGE uploads sent: a cold server's warm-up shows as the first above the last. */
  firstP50: number;
  lastP50: number;
  /** CPU per upload in ms: this process (the clients), the server processes started here, the PostgreSQL backends (null: not known). */
  clientCpuMs: number;
  serverCpuMs: number | null;
  databaseCpuMs: number | null;
}

/** CPU (ms) of each PostgreSQL backend connected to the database at `url`, by pid (they run on this machine). */
async function backendCpuMs(url: string): Promise<Map<number, number>> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>('select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()');
    return new Map(rows.flatMap(({ pid }) => {
      const ms = processCpuMs(pid);
      return ms === null ? [] : [[pid, ms] as const];
    }));
  } finally {
    await client.end();
  }
}

/** CLIENTS loops taking the next body until none is left; latency per request. */
async function drive(
  name: string,
  bodies: Uint8Array<ArrayBuffer>[],
  serverPids: (number | undefined)[],
  databaseUrl: string | null,
  send: (body: Uint8Array<ArrayBuffer>, client: number) => Promise<Response>,
): Promise<Run> {
  let next = 0;
  let failed = 0;
  // By the order sent, so the first uploads' can be told from the last ones'.
  const latencies: number[] = [];
  let firstError = '';
  const server0 = sumCpuMs(serverPids);
  const database0 = databaseUrl ? await backendCpuMs(databaseUrl) : null;
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CLIENTS }, async (_, client) => {
      for (let i = next++; i < bodies.length; i = next++) {
        const begin = performance.now();
        const res = await send(bodies[i]!, client);
        const body = await res.text();
        latencies[i] = performance.now() - begin;
        if (res.status >= 300) {
          failed++;
          firstError ||= `${res.status} ${body.slice(0, 200)}`;
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const client = process.cpuUsage(client0);
  const server1 = sumCpuMs(serverPids);
  // A backend that connected during the run counts from 0; one that left during it is missed.
  const database1 = databaseUrl ? await backendCpuMs(databaseUrl) : null;
  const databaseMs = database0 && database1 ? [...database1].reduce((sum, [pid, ms]) => sum + ms - (database0.get(pid) ?? 0), 0) : null;
  if (firstError) console.error(`${name}: ${failed} failed, first: ${firstError}`);
  return {
    name,
    perSecond: bodies.length / seconds,
    p50: pct(latencies, 50),
    p99: pct(latencies, 99),
    failed,
    firstP50: pct(latencies.slice(0, EDGE), 50),
    lastP50: pct(latencies.slice(-EDGE), 50),
    clientCpuMs: (client.user + client.system) / 1000 / bodies.length,
    serverCpuMs: server0 === null || server1 === null ? null : (server1 - server0) / bodies.length,
    databaseCpuMs: databaseMs === null ? null : databaseMs / bodies.length,
  };
}

type Body = 'multipart' | 'dicom';
const BODY_LABEL: Record<Body, string> = { multipart: 'multipart', dicom: 'DICOM body' };
const asBodies = (files: Uint8Array<ArrayBuffer>[], body: Body) => (body === 'multipart' ? multipartBodies(files) : files);
const contentTypeOf = (body: Body) => (body === 'multipart' ? MULTIPART : 'application/dicom');
/**
 * The one upload every server process gets before its figures, of the body it is then measured
 * with (the path measured is the path warmed), on a patient of its own. Until 2026-12-07
 * ImageMedix's was a multipart form whatever the body measured, so its DICOM-body path was
 * measured colder than its multipart one.
 */
const warmUpBody = (body: Body) => asBodies(makeFiles(1, { id: 'WARM-UP', name: 'WARMUP' }), body)[0]!;

/**
 * Orthanc's rows: for each body measured, a fresh Orthanc (with `--orthanc auto`) sent one
 * warm-up file of that body and then the measured files, as each ImageMedix row is a fresh
 * process and database. (Until 2026-12-07 one Orthanc took both bodies in turn, so its DICOM-body
 * row ran in an instance already warmed by the multipart row, and ImageMedix's in a fresh one:
 * docs/benchmarks/ingest.md.) An Orthanc given by URL takes every body in turn.
 */
async function orthanc(label: string): Promise<Run[]> {
  if (values.orthanc === 'off') return [];
  const runs: Run[] = [];
  for (const body of BODIES) {
    const run = await orthancRun(label, body);
    if (!run) return [];
    runs.push(run);
  }
  return runs;
}

async function orthancRun(label: string, body: Body): Promise<Run | null> {
  let base = values.orthanc;
  let child: ChildProcess | null = null;
  let dir: string | null = null;
  if (base === 'auto') {
    const binary = ['/usr/sbin/Orthanc', '/usr/bin/Orthanc'].find((b) => existsSync(b));
    if (!binary) {
      console.error('Orthanc is not installed (apt-get install orthanc); measuring ImageMedix alone');
      return null;
    }
    dir = mkdtempSync(path.join(STORAGE_DIR, 'imagemedix-bench-orthanc-'));
    const port = await freePort();
    writeFileSync(
      path.join(dir, 'orthanc.json'),
      JSON.stringify({
        Name: 'bench',
        StorageDirectory: path.join(dir, 'storage'),
        IndexDirectory: path.join(dir, 'storage'),
        HttpPort: port,
        RemoteAccessAllowed: false,
        AuthenticationEnabled: false,
        DicomServerEnabled: false,
        HttpCompressionEnabled: false,
        Plugins: [],
      }),
    );
    child = spawn(binary, [path.join(dir, 'orthanc.json')], { stdio: ['ignore', 'ignore', 'ignore'] });
    base = `http://127.0.0.1:${port}`;
  }
  try {
    await waitForHttp(`${base}/system`, 60_000, child ?? undefined);
    const headers = { 'content-type': contentTypeOf(body) };
    const send = (bytes: Uint8Array<ArrayBuffer>) => fetch(`${base}/instances`, { method: 'POST', body: bytes, headers });
    await (await send(warmUpBody(body))).arrayBuffer();
    const name = `Orthanc (${label}, ${BODY_LABEL[body]})`;
    if (WARMUP) warmups.push(await drive(`${name}, warm-up`, asBodies(warmupFiles(), body), [child?.pid], null, send));
    return await drive(name, asBodies(makeFiles(N), body), [child?.pid], null, send);
  } finally {
    if (child) await stopProcess(child);
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

async function imagemedix(
  kind: 'pglite' | 'postgres',
  files: Uint8Array<ArrayBuffer>[],
  body: Body,
  warmupFiles: Uint8Array<ArrayBuffer>[],
): Promise<Run> {
  const bodies = asBodies(files, body);
  const warmupBodies = asBodies(warmupFiles, body);
  const contentType = contentTypeOf(body);
  const dataDir = mkdtempSync(path.join(STORAGE_DIR, 'imagemedix-bench-ingest-'));
  const server = kind === 'postgres' ? await createServerDatabase(values['postgres-url'], 'imagemedix_bench_ingest') : null;
  const jwtSecret = randomBytes(32).toString('hex');
  const children: ChildProcess[] = [];
  try {
    const database = await openDatabase({ databaseUrl: server?.url ?? null, dataDir });
    const doctor = await createUser(database.db, { email: 'ingest@bench.test', password: 'bench-Lantern-orbit-71-quartz', name: 'Ingest', role: 'doctor' });
    await database.close();
    const token = await createTokenService(new TextEncoder().encode(jwtSecret), '12h').issue(doctor);
    const headers = { authorization: `Bearer ${token}` };
    const bases: string[] = [];
    // One after another: each applies the (idempotent) migrations at start-up.
    for (let a = 0; a < APIS; a++) {
      const port = await freePort();
      const role = path.join(kind, body, ...(APIS === 1 ? [] : [`api-${a + 1}`]));
      const child = startProcess('server', apiOnlyEnv({ port, dataDir, jwtSecret, databaseUrl: server?.url }), values['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${path.resolve(values['cpu-prof'], role)}`] : []);
      children.push(child);
      const base = `http://127.0.0.1:${port}`;
      await waitForHttp(`${base}/healthz`, 180_000, child);
      // One upload first, of the body measured (each Orthanc gets one too).
      const warm = await fetch(`${base}/api/scans`, { method: 'POST', body: warmUpBody(body), headers: { ...headers, 'content-type': contentType } });
      await warm.arrayBuffer();
      bases.push(base);
    }
    const how = BODY_LABEL[body];
    const label = APIS === 1 ? `ImageMedix (${kind}, ${how})` : `ImageMedix (${kind}, ${how}, ${APIS} API processes)`;
    const send = (body: Uint8Array<ArrayBuffer>, client: number) =>
      fetch(`${bases[client % bases.length]}/api/scans`, { method: 'POST', body, headers: { ...headers, 'content-type': contentType } });
    const pids = children.map((c) => c.pid);
    if (warmupBodies.length) warmups.push(await drive(`${label}, warm-up`, warmupBodies, pids, server?.url ?? null, send));
    return await drive(label, bodies, pids, server?.url ?? null, send);
  } finally {
    await Promise.all(children.map((c) => stopProcess(c)));
    rmSync(dataDir, { recursive: true, force: true });
    await server?.drop();
  }
}

const kinds = await databasesToMeasure(values.db, values['postgres-url']);
const machine = machineLine();
const files = makeFiles(N);
const size = Math.round(files.reduce((a, f) => a + f.length, 0) / files.length);
const runs: Run[] = [];
runs.push(...(await orthanc('first')));
for (const kind of kinds) for (const body of BODIES) runs.push(await imagemedix(kind, makeFiles(N), body, warmupFiles()));
// Orthanc again at the end: the machine is shared, its load moves.
runs.push(...(await orthanc('again')));

const cpu = (ms: number | null) => (ms === null ? '-' : ms.toFixed(2));
const table = [
  '| server | files/s | p50 ms | p99 ms | failed | client CPU ms/file | server CPU ms/file | PostgreSQL CPU ms/file |',
  '|---|---:|---:|---:|---:|---:|---:|---:|',
  ...runs.map(
    (r) =>
      `| ${r.name} | ${r.perSecond.toFixed(1)} | ${r.p50.toFixed(0)} | ${r.p99.toFixed(0)} | ${r.failed} | ${cpu(r.clientCpuMs)} | ${cpu(r.serverCpuMs)} | ${cpu(r.databaseCpuMs)} |`,
  ),
].join('\n');
const warmed = WARMUP ? `, after ${WARMUP} warm-up uploads to each server (20 other patients, same clients; not counted)` : '';
const head = `${N} DICOM files of ${size} bytes (64 x 64 MR, 20 patients), ${CLIENTS} clients${warmed}; the servers' files in ${STORAGE_DIR} (${fileSystemOf(STORAGE_DIR)}). ${machine}.`;
const warmupLines = warmups.map(
  (w) => `- ${w.name}: ${WARMUP} files, ${w.perSecond.toFixed(1)} files/s, ${w.failed} failed, server CPU ${cpu(w.serverCpuMs)} ms/file, PostgreSQL ${cpu(w.databaseCpuMs)} ms/file`,
);
const edges = `p50 of the first ${EDGE} uploads sent / of the last ${EDGE} (ms): ${runs.map((r) => `${r.name} ${r.firstP50.toFixed(0)} / ${r.lastP50.toFixed(0)}`).join('; ')}.`;
const text = [head, table, edges, ...(warmupLines.length ? [warmupLines.join('\n')] : [])].join('\n\n');
console.log(text);
appendFigures(values.out, text);
process.exit(0);
