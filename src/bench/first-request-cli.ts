/**
 * npm run bench:first-request -- [--db pglite|postgres|both] [--runs 3] [--out FILE]
 *
 * What a freshly started server pays on its first requests: `npm start`'s server (API only,
 * WORKER_IN_PROCESS=false) started over a seeded database, then the first, second and third
 * request of auth/me, the list, a scan detail and its status, one at a time. Each figure is the
 * wall time and the server process's CPU time (from /proc, 10 ms ticks: Linux only), and start-up
 * is the time and CPU from spawn to the first answer of /healthz. CPU is the figure to compare on
 * a shared machine.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { sql } from 'drizzle-orm';
import { createTokenService } from '../auth/tokens.js';
import { openDatabase } from '../platform/db/index.js';
import { createServerDatabase } from '../platform/db/server-database.js';
import { createUser } from '../users/service.js';
import { seedScans } from './seed.js';
import { SERVER_BENCH_OPTIONS, apiOnlyEnv, appendFigures, databasesToMeasure, freePort, machineLine, startProcess, stopProcess } from './support.js';

const { values } = parseArgs({ options: { ...SERVER_BENCH_OPTIONS, runs: { type: 'string', default: '3' } } });

/** CPU time (user + system) of a process so far, in ms. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

async function oneStart(kind: 'pglite' | 'postgres'): Promise<string> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'imagemedix-bench-first-'));
  const server = kind === 'postgres' ? await createServerDatabase(values['postgres-url'], 'imagemedix_bench_first') : null;
  const jwtSecret = randomBytes(32).toString('hex');
  let child: ChildProcess | null = null;
  try {
    const database = await openDatabase({ databaseUrl: server?.url ?? null, dataDir });
    const doctor = await createUser(database.db, { email: 'bench-doctor@bench.test', password: randomBytes(18).toString('base64url'), name: 'Bench Doctor', role: 'doctor' });
    await seedScans(database.db, { doctorId: doctor.id, patients: 20, scans: 200 });
    const picked = await database.db.execute(sql`select id from scans where status = 'completed' order by scan_date desc limit 1`);
    const scanId = ((Array.isArray(picked) ? picked : (picked as { rows: unknown[] }).rows) as { id: string }[])[0]!.id;
    await database.close();
    const auth = { authorization: `Bearer ${await createTokenService(new TextEncoder().encode(jwtSecret), '12h').issue(doctor)}` };

    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const spawned = performance.now();
    child = startProcess('server', apiOnlyEnv({ port, dataDir, jwtSecret, databaseUrl: server?.url }));
    const pid = child.pid!;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the server exited with code ${child.exitCode}`);
      const ok = await fetch(`${base}/healthz`).then((r) => r.status === 200, () => false);
      if (ok) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    const parts = [`start ${Math.round(performance.now() - spawned)} ms (CPU ${cpuMs(pid)})`];
    const endpoints: [string, string][] = [
      ['me', '/api/auth/me'],
      ['list', '/api/scans?limit=10'],
      ['detail', `/api/scans/${scanId}`],
      ['status', `/api/scans/${scanId}/status`],
    ];
    for (const [name, p] of endpoints) {
      const walls: number[] = [];
      const cpus: number[] = [];
      for (let i = 0; i < 3; i++) {
        const [t, c] = [performance.now(), cpuMs(pid)];
        const res = await fetch(`${base}${p}`, { headers: auth });
        await res.arrayBuffer();
        if (res.status !== 200) throw new Error(`${p} answered ${res.status}`);
        walls.push(Math.round(performance.now() - t));
        cpus.push(cpuMs(pid) - c);
      }
      parts.push(`${name} ${walls.join('/')} (CPU ${cpus.join('/')})`);
    }
    return `| ${kind} | ${parts.join(' | ')} | ${os.loadavg()[0]!.toFixed(2)} |`;
  } finally {
    if (child) await stopProcess(child);
    rmSync(dataDir, { recursive: true, force: true });
    await server?.drop();
  }
}

const machine = machineLine();
const rows: string[] = [];
for (const kind of await databasesToMeasure(values.db, values['postgres-url'])) {
  for (let run = 0; run < Number(values.runs); run++) rows.push(await oneStart(kind));
}
const table = [
  '| db | start-up | me: 1st/2nd/3rd ms (server CPU ms) | list | detail | status | load (1 min) |',
  '|---|---|---|---|---|---|---:|',
  ...rows,
].join('\n');
console.log(`machine: ${machine}\n\n${table}`);
appendFigures(values.out, `${machine}.\n\n${table}`);
process.exit(0);
