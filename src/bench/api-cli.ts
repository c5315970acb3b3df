/**
 * npm run bench:api -- [--db pglite|postgres|both] [--scans 200] [--connections 100] [--duration 5]
 *                      [--endpoints me,list,...] [--write-rate N] [--cpu-prof DIR] [--out docs/benchmarks/api.md]
 *
 * Read throughput of the API, side by side with the machine's HTTP ceiling in the same run: a
 * Fastify hello-world and `npm start` (API only, WORKER_IN_PROCESS=false) run as child processes,
 * autocannon drives each endpoint in turn with a doctor's token over a seeded database.
 * On PostgreSQL it creates and drops its own database.
 * --write-rate N: mixed load, N DICOM uploads a second by the same doctor (write-load.ts) while
 *   each endpoint is read; every row then says the write rate achieved during it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { sql } from 'drizzle-orm';
import { createTokenService } from '../auth/tokens.js';
import { REPO_ROOT } from '../platform/config.js';
import { openDatabase } from '../platform/db/index.js';
import { createServerDatabase } from '../platform/db/server-database.js';
import { createUser } from '../users/service.js';
import { seedScans } from './seed.js';
import { describeWrites, startWrites, type WriteFigures, type WriteLoad } from './write-load.js';
import {
  SERVER_BENCH_OPTIONS,
  freePort,
  machineLine,
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
    scans: { type: 'string', default: '200' },
    connections: { type: 'string', default: '100' },
    duration: { type: 'string', default: '5' },
    endpoints: { type: 'string' },
    'write-rate': { type: 'string', default: '0' },
  },
});
const WRITE_RATE = Number(values['write-rate']);

interface Result {
  name: string;
  path: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
  /** The writes meanwhile (--write-rate). */
  writes?: WriteFigures;
}

async function drive(name: string, url: string, headers: Record<string, string>, writes?: WriteLoad): Promise<Result> {
  writes?.mark();
  const r = await autocannon({
    url,
    headers,
    connections: Number(values.connections),
    duration: Number(values.duration),
  });
  const errors = r.errors + r.timeouts + r.non2xx;
  const at = new URL(url);
  return { name, path: at.pathname + at.search, rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors, writes: await writes?.stop() };
}

async function helloCeiling(): Promise<Result> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'src/bench/hello.ts')], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', PORT: String(port) },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  try {
    await waitForHttp(`http://127.0.0.1:${port}/`);
    return await drive('Fastify hello-world (ceiling)', `http://127.0.0.1:${port}/`, {});
  } finally {
    await stopProcess(child);
  }
}

async function imagemedix(kind: 'pglite' | 'postgres'): Promise<Result[]> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'imagemedix-bench-api-'));
  const server = kind === 'postgres' ? await createServerDatabase(values['postgres-url'], 'imagemedix_bench_api') : null;
  const jwtSecret = randomBytes(32).toString('hex');
  let child: ChildProcess | null = null;
  try {
    // Seed first: embedded PGlite belongs to one process at a time.
    const database = await openDatabase({ databaseUrl: server?.url ?? null, dataDir });
    const doctor = await createUser(database.db, {
      email: 'bench-doctor@bench.test',
      password: randomBytes(18).toString('base64url'),
      name: 'Bench Doctor',
      role: 'doctor',
    });
    await seedScans(database.db, { doctorId: doctor.id, patients: Math.max(1, Math.ceil(Number(values.scans) / 10)), scans: Number(values.scans) });
    const picked = await database.db.execute(sql`select id from scans where status = 'completed' order by scan_date desc limit 1`);
    const scanId = ((Array.isArray(picked) ? picked : (picked as { rows: unknown[] }).rows) as { id: string }[])[0]!.id;
    await database.close();

    const token = await createTokenService(new TextEncoder().encode(jwtSecret), '12h').issue(doctor);
    const port = await freePort();
    const profDir = values['cpu-prof'] ? path.resolve(values['cpu-prof'], kind) : null;
    child = startProcess(
      'server',
      apiOnlyEnv({ port, dataDir, jwtSecret, databaseUrl: server?.url }),
      profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : [],
    );
    const base = `http://127.0.0.1:${port}`;
    await waitForHttp(`${base}/healthz`, 180_000, child);
    const auth = { authorization: `Bearer ${token}` };
    const endpoints: [string, string][] = [
      ['me', '/api/auth/me'],
      ['list', '/api/scans?limit=10'],
      ['list-status', '/api/scans?limit=10&status=completed'],
      ['list-patient', '/api/scans?limit=10&patientId=BENCH-1'],
      ['list-dates', '/api/scans?limit=10&startDate=2020-01-01&endDate=2030-12-31'],
      ['detail', `/api/scans/${scanId}`],
      ['status', `/api/scans/${scanId}/status`],
    ];
    const wanted = values.endpoints?.split(',');
    const results: Result[] = [];
    for (const [name, p] of endpoints) {
      if (wanted && !wanted.includes(name)) continue;
      // A check that the endpoint answers 200 before it is measured: errors are not speed.
      const check = await fetch(`${base}${p}`, { headers: auth });
      if (check.status !== 200) throw new Error(`${p} answered ${check.status}: ${await check.text()}`);
      // A fresh write load per endpoint, so that each row's write figures are its own.
      const writes = WRITE_RATE > 0 ? startWrites({ url: `${base}/api/scans`, headers: auth, rate: WRITE_RATE }) : undefined;
      results.push(await drive(`${kind}: ${name}`, `${base}${p}`, auth, writes));
    }
    return results;
  } finally {
    if (child) await stopProcess(child);
    rmSync(dataDir, { recursive: true, force: true });
    await server?.drop();
  }
}

const kinds = await databasesToMeasure(values.db, values['postgres-url']);
const machine = machineLine();
const results: Result[] = [await helloCeiling()];
for (const kind of kinds) results.push(...(await imagemedix(kind)));
// The ceiling again at the end: the machine is shared, so its load may have moved meanwhile.
results.push({ ...(await helloCeiling()), name: 'Fastify hello-world (ceiling, again)' });

const table = [
  `| endpoint | path | req/s | p50 ms | p99 ms | errors |${WRITE_RATE > 0 ? ' writes meanwhile |' : ''}`,
  `|---|---|---:|---:|---:|---:|${WRITE_RATE > 0 ? '---|' : ''}`,
  ...results.map(
    (r) =>
      `| ${r.name} | \`${r.path.replace(/[0-9a-f-]{36}/, ':id')}\` | ${Math.round(r.rps)} | ${r.p50} | ${r.p99} | ${r.errors} |${WRITE_RATE > 0 ? ` ${r.writes ? describeWrites(r.writes) : '-'} |` : ''}`,
  ),
].join('\n');
const load = WRITE_RATE > 0 ? `, ${WRITE_RATE} uploads/s offered meanwhile (mixed)` : ', no writes';
console.log(`machine: ${machine}\n${Number(values.scans)} scans seeded, ${values.connections} connections, ${values.duration} s per endpoint${load}\n\n${table}`);
appendFigures(values.out, `${machine}; ${values.scans} scans seeded, ${values.connections} connections, ${values.duration} s per endpoint${load}.\n\n${table}`);
process.exit(0);
