/**
 * npm run bench:big -- [--scans 1000000] [--doctors 500] [--connections 20] [--duration 5]
 *                      [--write-rate N] [--postgres-url ...] [--out docs/benchmarks/big-tables.md] [--keep]
 *
 * Big tables on the PostgreSQL server: a fresh database seeded with N scans (patients of many
 * doctors, a completed analysis per completed scan), EXPLAIN ANALYZE of the list and status
 * queries, then autocannon on list / filters / status as a doctor and as an admin, through an
 * API-only `npm start`. The database is dropped at the end (unless --keep).
 * --write-rate N: mixed load, N DICOM uploads a second by the doctor measured (write-load.ts)
 *   while each row is read; each row then says the write rate achieved during it.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import pg from 'pg';
import { createTokenService } from '../auth/tokens.js';
import { openDatabase } from '../platform/db/index.js';
import { createServerDatabase } from '../platform/db/server-database.js';
import { createUser } from '../users/service.js';
import { seedScans } from './seed.js';
import { describeWrites, startWrites } from './write-load.js';
import { DEFAULT_POSTGRES_URL, apiOnlyEnv, freePort, machineLine, startProcess, stopProcess, waitForHttp } from './support.js';

const { values } = parseArgs({
  options: {
    scans: { type: 'string', default: '1000000' },
    doctors: { type: 'string', default: '500' },
    connections: { type: 'string', default: '20' },
    duration: { type: 'string', default: '5' },
    'postgres-url': { type: 'string', default: DEFAULT_POSTGRES_URL },
    out: { type: 'string' },
    keep: { type: 'boolean', default: false },
    /** A database this command seeded and kept before (--keep): measure it again without seeding. */
    reuse: { type: 'string' },
    'write-rate': { type: 'string', default: '0' },
  },
});
const WRITE_RATE = Number(values['write-rate']);
/** Doctors of the "in turn" row: each connection asks for their lists one after another. */
const MANY = 50;

const N = Number(values.scans);
const D = Number(values.doctors);
const machine = machineLine();
const server = values.reuse
  ? { url: values.reuse, drop: async () => console.log(`kept ${values.reuse}`) }
  : await createServerDatabase(values['postgres-url'], 'imagemedix_bench_big');
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'imagemedix-bench-big-'));
const jwtSecret = randomBytes(32).toString('hex');
let child: ChildProcess | null = null;
const out: string[] = [];
const say = (line = '') => {
  console.log(line);
  out.push(line);
};

try {
  const database = await openDatabase({ databaseUrl: server.url, dataDir: null });
  const t0 = Date.now();
  let admin: { id: string };
  const doctorIds: string[] = [];
  if (values.reuse) {
    const { rows: a } = await database.executor.executeSql(`select id from users where email = 'bench-admin@bench.test'`, []);
    admin = a[0] as { id: string };
    const { rows: d } = await database.executor.executeSql(
      `select id from users where email like 'bench-doctor-%' order by substr(email, 14, length(email) - 24)::int`,
      [],
    );
    doctorIds.push(...(d as { id: string }[]).map((r) => r.id));
  } else {
    admin = await createUser(database.db, { email: 'bench-admin@bench.test', password: 'bench-Lantern-orbit-71-quartz', name: 'Bench Admin', role: 'admin' });
    for (let i = 0; i < D; i++) {
      const u = await database.executor.executeSql(
        `insert into users (name, email, role) values ($1, $2, 'doctor') returning id`,
        [`Bench Doctor ${i}`, `bench-doctor-${i}@bench.test`],
      );
      doctorIds.push((u.rows[0] as { id: string }).id);
    }
    await seedScans(database.db, {
      doctorId: doctorIds[0]!,
      doctorIds,
      patients: Math.max(1, Math.floor(N / 10)),
      scans: N,
      onProgress: (done) => process.stdout.write(`\rseeded ${done} of ${N} scans (${Math.round((Date.now() - t0) / 1000)} s)`),
    });
    console.log();
  }
  await database.close();
  const seedSeconds = (Date.now() - t0) / 1000;

  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  const doctor = doctorIds[1]!;
  const { rows: counts } = await client.query<{ n: number; mine: number }>(
    `select (select count(*) from scans)::int as n,
            (select count(*) from scans where patient_id in (select patient_id from patient_doctors where doctor_id = $1))::int as mine`,
    [doctor],
  );
  const { rows: picked } = await client.query<{ id: string; patient_id: string }>(
    `select s.id, p.patient_id from scans s join patients p on p.id = s.patient_id
      where s.patient_id in (select patient_id from patient_doctors where doctor_id = $1) order by s.scan_date desc limit 1`,
    [doctor],
  );
  const scanId = picked[0]!.id;
  const patientId = picked[0]!.patient_id;
  const { rows: sizes } = await client.query<{ size: string }>(`select pg_size_pretty(pg_database_size(current_database())) as size`);
  await client.end();

  const tokens = createTokenService(new TextEncoder().encode(jwtSecret), '12h');
  const doctorToken = await tokens.issue({ id: doctor, tokenVersion: 0 });
  const adminToken = await tokens.issue({ id: admin.id, tokenVersion: 0 });
  // Many doctors listing at once, each their own kept page: what a write that drops every page costs.
  const manyTokens = await Promise.all(doctorIds.slice(0, MANY).map((id) => tokens.issue({ id, tokenVersion: 0 })));
  const port = await freePort();
  child = startProcess('server', apiOnlyEnv({ port, dataDir, jwtSecret, databaseUrl: server.url }));
  const base = `http://127.0.0.1:${port}`;
  await waitForHttp(`${base}/healthz`, 180_000, child);

  say(`\n### ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC: ${counts[0]!.n} scans\n`);
  say(`${machine}. PostgreSQL ${values['postgres-url'].replace(/\/\/[^@]*@/, '//')} (shared with the other engineers' tests); database ${sizes[0]!.size}, seeded in ${seedSeconds.toFixed(0)} s.`);
  say(`${D} doctors, ${Math.floor(N / 10)} patients; the doctor measured sees ${counts[0]!.mine} scans, the admin all. autocannon ${values.connections} connections, ${values.duration} s per row.`);
  say(WRITE_RATE > 0 ? `Mixed: ${WRITE_RATE} DICOM uploads/s offered by the doctor measured while each row is read.\n` : 'No writes meanwhile.\n');
  say(`| who | request | req/s | p50 ms | p99 ms | max ms | errors |${WRITE_RATE > 0 ? ' writes meanwhile |' : ''}`);
  say(`|---|---|---:|---:|---:|---:|---:|${WRITE_RATE > 0 ? '---|' : ''}`);
  const rows: [string, string, string][] = [
    ['doctor', 'list', '/api/scans?limit=10'],
    ['doctor', 'by patient', `/api/scans?limit=10&patientId=${patientId}`],
    ['doctor', 'by status', '/api/scans?limit=10&status=failed'],
    ['doctor', 'by date', '/api/scans?limit=10&startDate=2025-01-01&endDate=2025-03-31'],
    ['doctor', 'status', `/api/scans/${scanId}/status`],
    ['doctor', 'detail', `/api/scans/${scanId}`],
    ['doctors', `list, ${MANY} doctors in turn`, '/api/scans?limit=10'],
    ['admin', 'list', '/api/scans?limit=10'],
    ['admin', 'by patient', `/api/scans?limit=10&patientId=${patientId}`],
    ['admin', 'by status', '/api/scans?limit=10&status=failed'],
    ['admin', 'by date', '/api/scans?limit=10&startDate=2025-01-01&endDate=2025-03-31'],
    ['admin', 'page 50', '/api/scans?limit=10&page=50'],
    ['admin', 'status', `/api/scans/${scanId}/status`],
  ];
  for (const [who, name, p] of rows) {
    const headers = { authorization: `Bearer ${who === 'admin' ? adminToken : doctorToken}` };
    const check = await fetch(`${base}${p}`, { headers });
    if (check.status !== 200) throw new Error(`${p} answered ${check.status}: ${await check.text()}`);
    const writes = WRITE_RATE > 0 ? startWrites({ url: `${base}/api/scans`, headers: { authorization: `Bearer ${doctorToken}` }, rate: WRITE_RATE }) : null;
    writes?.mark();
    const r = await autocannon({
      url: `${base}${p}`,
      headers,
      connections: Number(values.connections),
      duration: Number(values.duration),
      ...(who === 'doctors' ? { requests: manyTokens.map((token) => ({ method: 'GET' as const, path: p, headers: { authorization: `Bearer ${token}` } })) } : {}),
    });
    const written = await writes?.stop();
    say(
      `| ${who} | ${name} \`${p.replace(/[0-9a-f-]{36}/, ':id').replace(patientId, ':patientId')}\` | ${Math.round(r.requests.average)} | ${r.latency.p50} | ${r.latency.p99} | ${r.latency.max} | ${r.errors + r.timeouts + r.non2xx} |${written ? ` ${describeWrites(written)} |` : ''}`,
    );
  }
  if (values.out) {
    mkdirSync(path.dirname(values.out), { recursive: true });
    appendFileSync(values.out, `${out.join('\n')}\n`);
  }
} finally {
  if (child) await stopProcess(child);
  rmSync(dataDir, { recursive: true, force: true });
  if (values.keep) console.log(`kept ${server.url}`);
  else await server.drop();
}
process.exit(0);
