/**
 * npm run bench:pipeline -- --scans 100 [--mode burst|idle] [--db pglite|postgres|both] [--concurrency 2] [--out docs/benchmarks/pipeline.md]
 *                            [--workers N] [--apis N] [--cpu-prof DIR]
 *
 * Starts the real server on a loopback port (API + in-process worker) and uploads N test images
 * through HTTP (half brain MRI, half chest X-ray from ../shared/datasets/*\/test).
 * - burst: all N at once; waits until every scan is analysed; scans per second and
 *   upload-to-completed latency.
 * - idle: one at a time on an idle server, each waited for before the next: the latency a
 *   radiologist sees (upload response, then upload-to-completed).
 * On PostgreSQL it creates and drops its own database.
 * --workers N (PostgreSQL only): the scale-out deployment in child processes instead, the API
 *   (`src/server.ts`, WORKER_IN_PROCESS=false) and N workers (`src/worker.ts`, each with
 *   WORKER_CONCURRENCY --concurrency); --workers 0 is one server child with its in-process
 *   worker, the same code as the default but off the benchmark's own event loop.
 * --apis N (with --workers): N API processes instead of one (each with its in-process worker
 *   when --workers is 0), the uploads spread over them in turn, as a load balancer would.
 * --cpu-prof DIR: a V8 CPU profile of every process that serves (the children, or this process
 *   in the default mode, where the uploading client shares the thread), under DIR/<database>.
 * --warmup N (burst): N scans uploaded at once and analysed before the measured burst, which
 *   then meets processes whose code V8 has already compiled (a server that has been running),
 *   not fresh ones (a fresh worker compiles ~3 ms of CPU a scan through a first burst of 200:
 *   docs/benchmarks/pipeline.md, 2026-12-06 23:10).
 * The uploads' multipart bodies are encoded by FormData before the clock starts, so the
 *   client's CPU in the burst is sending them, not encoding them.
 * --cpu-times (burst, with --workers, Linux): the CPU each thread of each process used from the
 *   first upload to the last analysis (/proc/<pid>/task/<tid>/stat), per scan: every child's
 *   main thread and its busiest other threads, this process (the client) and the database's
 *   backends.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { buildApp } from '../app.js';
import { createTokenService } from '../auth/tokens.js';
import { loadConfig, REPO_ROOT, type Config } from '../platform/config.js';
import { openDatabase, type Database } from '../platform/db/index.js';
import { createServerDatabase } from '../platform/db/server-database.js';
import { inArray, sql } from 'drizzle-orm';
import { analyses } from '../platform/db/schema.js';
import { createRuntime } from '../runtime.js';
import type { ScanType } from '../scan-types/index.js';
import { analysisOutcomes, databasesToMeasure, freePort, startProcess, stopProcess, waitForHttp } from '../bench/support.js';
import { createUser } from '../users/service.js';

const { values } = parseArgs({
  options: {
    scans: { type: 'string', default: '60' },
    db: { type: 'string', default: 'both' },
    concurrency: { type: 'string', default: '2' },
    mode: { type: 'string', default: 'burst' },
    'postgres-url': { type: 'string', default: 'postgres://postgres@127.0.0.1:5432/postgres' },
    out: { type: 'string' },
    'timeout-seconds': { type: 'string', default: '900' },
    workers: { type: 'string' },
    apis: { type: 'string', default: '1' },
    'cpu-prof': { type: 'string' },
    'cpu-times': { type: 'boolean', default: false },
    warmup: { type: 'string', default: '0' },
  },
});

const N = Number(values.scans);
const MODE = values.mode === 'idle' ? 'idle' : 'burst';
if (values.mode !== 'idle' && values.mode !== 'burst') throw new Error('--mode must be burst or idle');
// undefined: API and worker in this very process (the historical figures); a number: child processes.
const WORKERS = values.workers === undefined ? undefined : Number(values.workers);
if (WORKERS !== undefined && !(Number.isInteger(WORKERS) && WORKERS >= 0)) throw new Error('--workers must be 0 or more');
if (WORKERS !== undefined && values.db !== 'postgres') throw new Error('--workers needs --db postgres (PGlite is one process)');
const APIS = Number(values.apis);
if (!(Number.isInteger(APIS) && APIS >= 1)) throw new Error('--apis must be 1 or more');
if (APIS > 1 && WORKERS === undefined) throw new Error('--apis needs --workers (the API processes are children)');
const PROFILE_DIR = values['cpu-prof'] ? path.resolve(values['cpu-prof']) : null;
const CPU_TIMES = values['cpu-times'] === true;
if (CPU_TIMES && (WORKERS === undefined || values.mode === 'idle')) throw new Error('--cpu-times needs --workers and a burst');
const WARMUP = Number(values.warmup);
if (!(Number.isInteger(WARMUP) && WARMUP >= 0)) throw new Error('--warmup must be 0 or more');
if (WARMUP > 0 && values.mode === 'idle') throw new Error('--warmup is for a burst (idle mode warms up with two scans)');
const DATASETS = path.resolve(REPO_ROOT, '../shared/datasets');

function testImages(n: number): { file: string; scanType: ScanType }[] {
  const pick = (dataset: string, scanType: ScanType) => {
    const root = path.join(DATASETS, dataset, 'test');
    return readdirSync(root).flatMap((cls) =>
      readdirSync(path.join(root, cls))
        .sort()
        .map((f) => ({ file: path.join(root, cls, f), scanType })),
    );
  };
  const brain = pick('brain-mri', 'brain-mri');
  const chest = pick('chest-xray', 'chest-xray');
  const out = [];
  for (let i = 0; out.length < n; i++) {
    out.push(i % 2 === 0 ? brain[(i * 7) % brain.length]! : chest[(i * 5) % chest.length]!);
  }
  return out;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

interface Served {
  /** The API processes' addresses; uploads go to each in turn. */
  bases: string[];
  /** The child processes by role (api, worker-1...), for --cpu-times. */
  pids?: Map<string, number>;
  stop(): Promise<void>;
}

/** CPU seconds used so far by each thread of `pid` (by thread id), from /proc. */
function threadCpuSeconds(pid: number): Map<number, number> {
  const tick = 100; // USER_HZ, 100 on every Linux the benchmark runs on
  const out = new Map<number, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), (Number(fields[11]) + Number(fields[12])) / tick);
    } catch {
      // the thread ended
    }
  }
  return out;
}

/** Per-thread CPU of the roles' processes: a snapshot now, for `cpuTable` to subtract. */
function cpuSnapshot(roles: Map<string, number[]>): Map<string, Map<string, number>> {
  const snap = new Map<string, Map<string, number>>();
  for (const [role, pids] of roles) {
    const threads = new Map<string, number>();
    for (const pid of pids) for (const [tid, s] of threadCpuSeconds(pid)) threads.set(tid === pid ? `${pid}/main` : `${pid}/${tid}`, s);
    snap.set(role, threads);
  }
  return snap;
}

/** CPU per scan (ms) between two snapshots: each role's main thread, its 3 busiest other threads, the rest. */
function cpuTable(before: Map<string, Map<string, number>>, after: Map<string, Map<string, number>>, scans: number): string {
  const lines: string[] = [];
  let all = 0;
  for (const [role, threads] of after) {
    const used = [...threads].map(([k, s]) => [k, s - (before.get(role)?.get(k) ?? 0)] as const);
    const total = used.reduce((a, [, s]) => a + s, 0);
    all += total;
    const main = used.filter(([k]) => k.endsWith('/main')).reduce((a, [, s]) => a + s, 0);
    const others = used.filter(([k]) => !k.endsWith('/main')).map(([, s]) => s).sort((a, b) => b - a);
    const ms = (s: number) => ((s * 1000) / scans).toFixed(1);
    const top = others.slice(0, 3).map(ms).join(' + ');
    const rest = others.slice(3).reduce((a, s) => a + s, 0);
    lines.push(
      role === 'postgres' || role === 'client'
        ? `  ${role}: ${ms(total)} ms per scan`
        : `  ${role}: ${ms(total)} ms per scan (main ${ms(main)}, busiest others ${top || '-'}, rest ${ms(rest)})`,
    );
  }
  return `CPU per scan, first upload to last analysis:\n${lines.join('\n')}\n  all: ${((all * 1000) / scans).toFixed(1)} ms`;
}

/** API and in-process worker on this process's event loop, beside the uploading client. */
async function inThisProcess(config: Config, database: Database, kind: string): Promise<Served> {
  const log = pino({ level: 'silent' });
  const runtime = await createRuntime(config, database, { log });
  const app = await buildApp(runtime.ctx, { logger: false });
  await runtime.startWorkers();
  await app.listen({ port: 0, host: '127.0.0.1' });
  const profiler = PROFILE_DIR ? new Session() : null;
  if (profiler) {
    profiler.connect();
    await profiler.post('Profiler.enable');
    await profiler.post('Profiler.start');
  }
  return {
    bases: [`http://127.0.0.1:${(app.server.address() as { port: number }).port}`],
    async stop() {
      if (profiler) {
        const { profile } = await profiler.post('Profiler.stop');
        mkdirSync(path.join(PROFILE_DIR!, kind), { recursive: true });
        writeFileSync(path.join(PROFILE_DIR!, kind, `bench-${process.pid}.cpuprofile`), JSON.stringify(profile));
        profiler.disconnect();
      }
      await app.close();
      await runtime.stop();
    },
  };
}

/** APIS API processes (each with its in-process worker when WORKERS is 0) and WORKERS worker processes. */
async function inChildren(config: Config, jwtSecret: string, databaseUrl: string, kind: string): Promise<Served> {
  const env = {
    DATA_DIR: config.dataDir,
    DATABASE_URL: databaseUrl,
    JWT_SECRET: jwtSecret,
    RATE_LIMIT_MAX: '1000000',
    LOG_LEVEL: 'warn',
    WORKER_CONCURRENCY: values.concurrency,
  };
  const nodeArgs = (role: string) => (PROFILE_DIR ? ['--cpu-prof', `--cpu-prof-dir=${path.join(PROFILE_DIR, kind, role)}`] : []);
  const children: ChildProcess[] = [];
  const bases: string[] = [];
  const pids = new Map<string, number>();
  // One after another: each applies the (idempotent) migrations at start-up.
  for (let i = 0; i < APIS; i++) {
    const port = await freePort();
    const api = startProcess(
      'server',
      { ...env, PORT: String(port), HOST: '127.0.0.1', WORKER_IN_PROCESS: WORKERS === 0 ? 'true' : 'false' },
      nodeArgs(APIS === 1 ? 'api' : `api-${i + 1}`),
    );
    children.push(api);
    pids.set(APIS === 1 ? 'api' : `api-${i + 1}`, api.pid!);
    bases.push(`http://127.0.0.1:${port}`);
    await waitForHttp(`${bases[i]}/healthz`, 180_000, api);
  }
  // A worker opens its metrics port once it works jobs: the uploads start when all of them do.
  const metricsToken = randomBytes(16).toString('hex');
  for (let i = 0; i < WORKERS!; i++) {
    const metricsPort = await freePort();
    const worker = startProcess('worker', { ...env, METRICS_TOKEN: metricsToken, METRICS_PORT: String(metricsPort), HOST: '127.0.0.1' }, nodeArgs(`worker-${i + 1}`));
    children.push(worker);
    pids.set(`worker-${i + 1}`, worker.pid!);
    await waitForHttp(`http://127.0.0.1:${metricsPort}/metrics`, 180_000, worker);
  }
  return {
    bases,
    pids,
    async stop() {
      await Promise.all(children.map((c) => stopProcess(c)));
    },
  };
}

async function run(kind: 'pglite' | 'postgres') {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'imagemedix-bench-'));
  const server = kind === 'postgres' ? await createServerDatabase(values['postgres-url'], 'imagemedix_bench') : null;
  const databaseUrl = server?.url ?? null;
  const jwtSecret = randomBytes(32).toString('hex');
  const config = loadConfig({
    DATA_DIR: dataDir,
    JWT_SECRET: jwtSecret,
    RATE_LIMIT_MAX: '1000000',
    LOG_LEVEL: 'silent',
    WORKER_CONCURRENCY: values.concurrency,
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
  });
  const database: Database = await openDatabase({ databaseUrl, dataDir: databaseUrl ? null : dataDir });
  const user = await createUser(database.db, { email: 'bench@bench.test', password: randomBytes(18).toString('base64url'), name: 'Bench', role: 'doctor' });
  const served = WORKERS === undefined ? await inThisProcess(config, database, kind) : await inChildren(config, jwtSecret, databaseUrl!, kind);
  const { bases } = served;
  const token = await createTokenService(config.jwtSecret, '12h').issue(user);
  const auth = { authorization: `Bearer ${token}` };

  const images = testImages(N);
  // Each upload's multipart body and its content type (its boundary), encoded by the platform's
  // FormData (the image, then the fields), before the clock.
  const requests = await Promise.all(
    images.map(async (img, i) => {
      const form = new FormData();
      form.append('image', new Blob([readFileSync(img.file)], { type: 'application/octet-stream' }), path.basename(img.file));
      form.append('patientId', `BENCH-${i % 20}`);
      form.append('patientName', `Bench Patient ${i % 20}`);
      form.append('scanType', img.scanType);
      const encoded = new Request(`${bases[0]}/api/scans`, { method: 'POST', body: form });
      return { body: await encoded.arrayBuffer(), headers: { ...auth, 'content-type': encoded.headers.get('content-type')! } };
    }),
  );
  // Wall-clock times: the end of each analysis is its completed_at, written by the worker.
  const started = new Map<string, number>();
  const responded: number[] = [];
  const upload = async (i: number) => {
    const begin = Date.now();
    const { body, headers } = requests[i]!;
    const res = await fetch(`${bases[i % bases.length]}/api/scans`, { method: 'POST', body, headers });
    if (res.status !== 201) throw new Error(`upload failed: ${res.status} ${await res.text()}`);
    const scan = (await res.json()) as { _id: string };
    responded.push(Date.now() - begin);
    started.set(scan._id, begin);
    return scan._id;
  };
  const deadline = Date.now() + Number(values['timeout-seconds']) * 1000;
  type Row = { scanId: string; status: string; refusalReason: string | null; completedAt: Date | null };
  const waitAll = async (pollMs: number): Promise<Row[]> => {
    const ids = [...started.keys()];
    for (;;) {
      // A count while analyses run (the client's CPU is measured too), the rows once they are done.
      const [progress] = await database.db
        .select({ done: sql<number>`(count(*) filter (where ${analyses.status} in ('completed', 'failed')))::int` })
        .from(analyses)
        .where(inArray(analyses.scanId, ids));
      if ((progress?.done ?? 0) >= ids.length) {
        return database.db
          .select({ scanId: analyses.scanId, status: analyses.status, refusalReason: analyses.refusalReason, completedAt: analyses.completedAt })
          .from(analyses)
          .where(inArray(analyses.scanId, ids));
      }
      if (Date.now() > deadline) throw new Error(`timed out: ${progress?.done ?? 0} of ${ids.length} analysed`);
      await new Promise((r) => setTimeout(r, pollMs));
    }
  };
  // The processes whose threads --cpu-times reads: the children, this one, the database's backends.
  const cpuRoles = async () => {
    const roles = new Map<string, number[]>([...(served.pids ?? [])].map(([role, pid]) => [role, [pid]]));
    roles.set('client', [process.pid]);
    const backends = await database.executor.executeSql('select pid from pg_stat_activity where datname = current_database()');
    roles.set('postgres', (backends.rows as { pid: number }[]).map((r) => Number(r.pid)));
    return roles;
  };
  if (MODE === 'burst' && WARMUP > 0) {
    await Promise.all(Array.from({ length: WARMUP }, (_img, i) => upload(i % N)));
    await waitAll(100);
    started.clear();
    responded.length = 0;
  }
  const cpuBefore = CPU_TIMES ? cpuSnapshot(await cpuRoles()) : null;
  const t0 = Date.now();
  let rows: Row[];
  // When the last upload was answered (burst): what is left after it is the analyses' tail.
  let uploadSeconds = 0;
  if (MODE === 'burst') {
    await Promise.all(images.map((_img, i) => upload(i)));
    uploadSeconds = (Date.now() - t0) / 1000;
    rows = await waitAll(100);
  } else {
    // Two warm-up scans (model sessions load on the first analysis of each type) are not counted.
    for (let i = 0; i < 2; i++) {
      await upload(i);
      await waitAll(5);
    }
    await database.db.delete(analyses);
    started.clear();
    responded.length = 0;
    for (let i = 0; i < images.length; i++) {
      await upload(i);
      await waitAll(5);
      // A quiet moment between scans, so each one meets an idle server.
      await new Promise((r) => setTimeout(r, 50));
    }
    rows = await waitAll(5);
    uploadSeconds = (Date.now() - t0) / 1000;
  }
  const cpu = cpuBefore ? cpuTable(cpuBefore, cpuSnapshot(await cpuRoles()), N) : null;
  // A refusal (the chest X-ray NORMAL2-IM-0441-0001.jpeg of the test set, out-of-distribution
  // score 20.9 over the limit 20.5, is scan 44 of a burst and scan 124) is no failure.
  const { failed, refused } = analysisOutcomes(rows);
  const lastEnd = Math.max(...rows.map((r) => r.completedAt!.getTime()));
  const latencies = rows.map((r) => r.completedAt!.getTime() - started.get(r.scanId)!);
  const totalSeconds = (lastEnd - t0) / 1000;
  await served.stop();
  await database.close();
  rmSync(dataDir, { recursive: true, force: true });
  await server?.drop();
  return {
    kind,
    scans: N,
    failed,
    refused,
    uploadSeconds,
    totalSeconds,
    scansPerSecond: N / totalSeconds,
    p50: pct(latencies, 50),
    p95: pct(latencies, 95),
    uploadP50: pct(responded, 50),
    cpu,
  };
}

const kinds = await databasesToMeasure(values.db, values['postgres-url']);
const machine = `${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}`;
const rows: string[] = [];
const deployment =
  WORKERS === undefined
    ? 'API + in-process worker, in the benchmark process'
    : WORKERS === 0
      ? APIS === 1
        ? 'API + in-process worker, one child process'
        : `${APIS} API processes, each with its in-process worker`
      : `${APIS === 1 ? 'API process' : `${APIS} API processes`} + ${WORKERS} worker process${WORKERS > 1 ? 'es' : ''}`;
for (const kind of kinds) {
  const r = await run(kind);
  const line =
    MODE === 'burst'
      ? `| ${r.kind} | ${deployment} | ${r.scans} | ${values.concurrency} | ${r.scansPerSecond.toFixed(2)} | ${(r.p50 / 1000).toFixed(2)} s | ${(r.p95 / 1000).toFixed(2)} s | ${r.refused} | ${r.failed} |`
      : `| ${r.kind} | ${r.scans} | ${r.uploadP50} ms | ${r.p50} ms | ${r.p95} ms | ${r.refused} | ${r.failed} |`;
  console.log(
    MODE === 'burst'
      ? `${r.kind} (${deployment}): ${r.scans} scans in ${r.totalSeconds.toFixed(1)} s (last upload answered at ${r.uploadSeconds.toFixed(1)} s, upload response p50 ${(r.uploadP50 / 1000).toFixed(2)} s): ` +
          `${r.scansPerSecond.toFixed(2)} scans/s, upload-to-completed p50 ${(r.p50 / 1000).toFixed(2)} s, p95 ${(r.p95 / 1000).toFixed(2)} s, refused ${r.refused}, failed ${r.failed}`
      : `${r.kind}, idle, one scan at a time: ${r.scans} scans, upload response p50 ${r.uploadP50} ms, ` +
          `upload-to-completed p50 ${r.p50} ms, p95 ${r.p95} ms, refused ${r.refused}, failed ${r.failed}`,
  );
  if (r.cpu) console.log(r.cpu);
  rows.push(line);
}
console.log(`machine: ${machine}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
if (values.out) {
  mkdirSync(path.dirname(values.out), { recursive: true });
  appendFileSync(
    values.out,
    `\n### ${new Date().toISOString().slice(0, 10)}, ${MODE}: ${machine}, load average ${os.loadavg()[0]!.toFixed(2)}\n\n` +
      (MODE === 'burst'
        ? '| database | deployment | scans | worker concurrency | scans/s | p50 upload-to-completed | p95 | refused | failed |\n|---|---|---|---|---|---|---|---|---|\n'
        : '| database | scans (one at a time, idle) | p50 upload response | p50 upload-to-completed | p95 | refused | failed |\n|---|---|---|---|---|---|---|\n') +
      rows.join('\n') +
      '\n',
  );
}
process.exit(0);
