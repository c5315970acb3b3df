/** Shared pieces of the benchmark commands: databases, child processes, ports, the machine. */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../platform/config.js';
import { postgresReachable } from '../platform/db/server-database.js';

export const DEFAULT_POSTGRES_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

/** The options every benchmark of a running server takes (parseArgs): databases, figures file, profiles. */
export const SERVER_BENCH_OPTIONS = {
  db: { type: 'string', default: 'both' },
  'postgres-url': { type: 'string', default: DEFAULT_POSTGRES_URL },
  out: { type: 'string' },
  'cpu-prof': { type: 'string' },
} as const;

/** The databases to measure (--db pglite|postgres|both); PostgreSQL is left out, saying so, when unreachable. */
export async function databasesToMeasure(db: string, postgresUrl: string): Promise<('pglite' | 'postgres')[]> {
  const kinds: ('pglite' | 'postgres')[] = db === 'both' ? ['pglite', 'postgres'] : [db as 'pglite' | 'postgres'];
  if (kinds.includes('postgres') && !(await postgresReachable(postgresUrl))) {
    console.error(`PostgreSQL is not reachable at ${postgresUrl}; measuring the embedded database only`);
    return kinds.filter((k) => k !== 'postgres');
  }
  return kinds;
}

/** Appends one dated run (`text`) to the figures file of a benchmark (--out), when one is named. */
export function appendFigures(out: string | undefined, text: string): void {
  if (!out) return;
  mkdirSync(path.dirname(out), { recursive: true });
  appendFileSync(out, `\n### ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC\n\n${text}\n`);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export async function waitForHttp(url: string, timeoutMs = 60_000, child?: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`the process for ${url} exited with code ${child.exitCode}`);
    try {
      const res = await fetch(url);
      if (res.status < 500) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The settings of an API-only server child (`WORKER_IN_PROCESS=false`, so no analysis competes)
 * as every benchmark runs it: loopback, quiet log, no rate limit in the way.
 */
export function apiOnlyEnv({ port, dataDir, jwtSecret, databaseUrl }: { port: number; dataDir: string; jwtSecret: string; databaseUrl?: string | null }): Record<string, string> {
  return {
    PORT: String(port),
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    JWT_SECRET: jwtSecret,
    LOG_LEVEL: 'warn',
    RATE_LIMIT_MAX: '1000000',
    WORKER_IN_PROCESS: 'false',
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
  };
}

/** `npm start` / `npm run worker` as a child process (node + tsx), with the given settings. */
export function startProcess(script: 'server' | 'worker', env: Record<string, string>, extraNodeArgs: string[] = []): ChildProcess {
  const child = spawn(process.execPath, [...extraNodeArgs, '--import', 'tsx', path.join(REPO_ROOT, 'src', `${script}.ts`)], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return child;
}

export async function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}

/** The machine and its load, for the line every benchmark result carries. */
export function machineLine(): string {
  const cpus = os.cpus();
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  let pgVersion = '';
  try {
    pgVersion = readFileSync('/etc/debian_version', 'utf8').trim();
  } catch {
    // not Debian
  }
  return (
    `${cpus[0]?.model ?? 'cpu'} x${cpus.length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, node ${process.version}` +
    `${pgVersion ? `, Debian ${pgVersion}` : ''}, load average ${load} (1/5/15 min) at the start`
  );
}

export const pct = (xs: number[], p: number): number => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

/**
 * A benchmark's analyses by how they ended: a refusal (an input or out-of-distribution check
 * declined the image, status `failed` with a refusal reason: the server working as it should)
 * is counted apart from a real failure, so a run that says `failed 0` had none.
 */
export function analysisOutcomes(rows: readonly { status: string; refusalReason: string | null }[]): {
  completed: number;
  refused: number;
  failed: number;
} {
  let completed = 0;
  let refused = 0;
  let failed = 0;
  for (const r of rows) {
    if (r.status === 'completed') completed++;
    else if (r.status === 'failed' && r.refusalReason !== null) refused++;
    else if (r.status === 'failed') failed++;
  }
  return { completed, refused, failed };
}
