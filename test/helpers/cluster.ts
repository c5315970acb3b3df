/**
 * A deployment in child processes for the scale-out and fault tests: N API processes
 * (`src/server.ts`, WORKER_IN_PROCESS=false) and M workers (`src/worker.ts`) on one fresh
 * PostgreSQL database, Redis for the shared rate limits, an S3-compatible store (s3rver on
 * loopback) and a webhook receiver that records every delivery. Everything it starts is
 * registered for `close()`, which the tests call in `finally`: children killed, database
 * dropped, Redis keys and temporary directories removed, even when the test failed.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import S3rver from 's3rver';
import { ANALYZE_SCAN_JOB } from '../../src/analysis/job-name.js';
import { createTokenService } from '../../src/auth/tokens.js';
import { REPO_ROOT } from '../../src/platform/config.js';
import { openDatabase, type Database } from '../../src/platform/db/index.js';
import { createServerDatabase, postgresReachable } from '../../src/platform/db/server-database.js';
import { createS3Storage, type Storage } from '../../src/platform/storage/index.js';
import { withDatabaseOriginals } from '../../src/scans/originals.js';
import { createUser } from '../../src/users/service.js';
import { FIXTURES, multipart } from '../../src/scans/test-support.js';
import { freePort } from '../../src/bench/support.js';
import { WEBHOOK_DELIVERY_JOB } from '../../src/webhooks/deliver.job.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const POSTGRES_ADMIN_URL = process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** Polls `check` until it returns a value other than undefined/false; fails with `what` after `timeoutMs`. */
export async function until<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 120_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? ` (last error: ${lastError instanceof Error ? lastError.message : JSON.stringify(lastError)})` : ''}`);
    }
    await sleep(everyMs);
  }
}

export async function reachable(kind: 'redis' | 'postgres'): Promise<boolean> {
  if (kind === 'redis') {
    const r = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 2000, retryStrategy: () => null });
    r.on('error', () => undefined);
    try {
      await r.connect();
      await r.ping();
      return true;
    } catch {
      return false;
    } finally {
      r.disconnect();
    }
  }
  return postgresReachable(POSTGRES_ADMIN_URL);
}

/** A child process with its recent output kept for the failure message. */
export interface Child {
  name: string;
  process: ChildProcess;
  port: number | null;
  /** Parsed pino lines of its stdout. */
  logs: Array<Record<string, unknown>>;
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  tail(): string;
}

function spawnChild(name: string, script: 'server' | 'worker', env: Record<string, string>, port: number | null): Child {
  return spawnLogged(name, ['--import', 'tsx', path.join(REPO_ROOT, 'src', `${script}.ts`)], env, port);
}

/** Runs `node <args>` in the repository with only `env` (and PATH, HOME), its pino lines parsed. */
export function spawnLogged(name: string, args: string[], env: Record<string, string>, port: number | null): Child {
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const raw: string[] = [];
  const keep = (line: string) => {
    raw.push(line);
    if (raw.length > 300) raw.shift();
  };
  let pending = '';
  child.stdout.on('data', (d: Buffer) => {
    pending += d.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      keep(line);
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    }
  });
  child.stderr.on('data', (d: Buffer) => keep(d.toString().trimEnd()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { name, process: child, port, logs, exited, tail: () => raw.slice(-40).join('\n') };
}

export interface ClusterOptions {
  /** PostgreSQL server to create the database on (admin URL); default the local server. */
  postgresAdminUrl?: string;
  /** Extra settings for every process. */
  env?: Record<string, string>;
}

export interface Cluster {
  databaseUrl: string;
  /** The test's own connection (migrated); reads what the processes wrote. */
  database: Database;
  /** The processes' files (the bucket, and the small originals kept in the database), read as they read them. */
  storage: Storage;
  receiver: WebhookReceiver;
  children: Child[];
  /** A doctor with a token valid in every process (same JWT secret). */
  doctor: { id: string; auth: { authorization: string } };
  startApi(name: string, port?: number): Promise<Child>;
  startWorker(name: string, env?: Record<string, string>): Promise<Child>;
  /** Output of every child, for a failed assertion's message. */
  report(): string;
  close(): Promise<void>;
}

interface Delivery {
  webhookId: string;
  type: string;
  scanId: string;
}

interface WebhookReceiver {
  url: string;
  deliveries: Delivery[];
  close(): Promise<void>;
}

async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const deliveries: Delivery[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as { type: string; data: { scanId: string } };
        deliveries.push({ webhookId: String(req.headers['webhook-id']), type: body.type, scanId: body.data.scanId });
      } catch {
        // counted as nothing; the assertions on deliveries will say so
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/hook`,
    deliveries,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const cleanups: Array<() => unknown> = [];
  const close = async () => {
    for (const step of cleanups.reverse()) {
      try {
        await step();
      } catch {
        // clean up the rest anyway
      }
    }
  };
  try {
    const tempDir = mkdtempSync(path.join(tmpdir(), 'imagemedix-cluster-'));
    cleanups.push(() => rmSync(tempDir, { recursive: true, force: true }));

    const bucket = 'imagemedix';
    const s3 = new S3rver({
      port: 0,
      address: '127.0.0.1',
      silent: true,
      directory: path.join(tempDir, 's3'),
      configureBuckets: [{ name: bucket, configs: [] }],
    });
    const { port: s3Port } = await s3.run();
    cleanups.push(() => s3.close());
    const s3Env = {
      S3_BUCKET: bucket,
      S3_ENDPOINT: `http://127.0.0.1:${s3Port}`,
      S3_ACCESS_KEY_ID: 'S3RVER',
      S3_SECRET_ACCESS_KEY: 'S3RVER',
      S3_FORCE_PATH_STYLE: 'true',
    };
    const storage = createS3Storage({
      bucket,
      region: 'us-east-1',
      endpoint: s3Env.S3_ENDPOINT,
      accessKeyId: 'S3RVER',
      secretAccessKey: 'S3RVER',
      forcePathStyle: true,
      prefix: '',
    });

    const receiver = await startWebhookReceiver();
    cleanups.push(() => receiver.close());

    const adminUrl = opts.postgresAdminUrl ?? POSTGRES_ADMIN_URL;
    const serverDatabase = await createServerDatabase(adminUrl, 'imagemedix_cluster');
    cleanups.push(() => serverDatabase.drop());
    const databaseUrl = serverDatabase.url;
    const database = await openDatabase({ databaseUrl, dataDir: null, poolSize: 3 });
    cleanups.push(() => database.close());

    const redisPrefix = `imagemedix-test-${randomBytes(4).toString('hex')}:`;
    cleanups.push(async () => {
      const r = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
      r.on('error', () => undefined);
      try {
        const keys = await r.keys(`${redisPrefix}*`);
        if (keys.length > 0) await r.del(...keys);
      } finally {
        r.disconnect();
      }
    });

    const jwtSecret = randomBytes(32).toString('hex');
    const user = await createUser(database.db, {
      email: `cluster-${randomBytes(4).toString('hex')}@example.test`,
      password: randomBytes(18).toString('base64url'),
      name: 'Cluster Doctor',
      role: 'doctor',
    });
    const token = await createTokenService(new TextEncoder().encode(jwtSecret), '1h').issue(user);

    const common: Record<string, string> = {
      DATABASE_URL: databaseUrl,
      DATA_DIR: path.join(tempDir, 'data'),
      JWT_SECRET: jwtSecret,
      REDIS_URL,
      REDIS_KEY_PREFIX: redisPrefix,
      ...s3Env,
      HOST: '127.0.0.1',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_TIMEOUT_MS: '5000',
      RATE_LIMIT_MAX: '100000',
      WORKER_CONCURRENCY: '1',
      API_DOCS: 'off',
      LOG_LEVEL: 'info',
      ...opts.env,
    };
    const children: Child[] = [];
    cleanups.push(async () => {
      for (const c of children) {
        if (c.process.exitCode === null && c.process.signalCode === null) c.process.kill('SIGKILL');
      }
      await Promise.all(children.map((c) => c.exited));
    });

    const cluster: Cluster = {
      databaseUrl,
      database,
      storage: withDatabaseOriginals(storage, database.db),
      receiver,
      children,
      doctor: { id: user.id, auth: { authorization: `Bearer ${token}` } },
      async startApi(name, port) {
        const p = port ?? (await freePort());
        const child = spawnChild(name, 'server', { ...common, PORT: String(p), WORKER_IN_PROCESS: 'false' }, p);
        children.push(child);
        await until(`${name} to answer /readyz`, async () => {
          if (child.process.exitCode !== null) throw new Error(`${name} exited (${child.process.exitCode}):\n${child.tail()}`);
          const res = await fetch(`http://127.0.0.1:${p}/readyz`).catch(() => null);
          return res?.status === 200;
        });
        return child;
      },
      async startWorker(name, env = {}) {
        const child = spawnChild(name, 'worker', { ...common, ...env }, null);
        children.push(child);
        await until(`${name} to start working`, async () => {
          if (child.process.exitCode !== null) throw new Error(`${name} exited (${child.process.exitCode}):\n${child.tail()}`);
          return child.logs.some((l) => l.msg === 'worker started');
        });
        return child;
      },
      report() {
        return children.map((c) => `--- ${c.name} (pid ${c.process.pid}) ---\n${c.tail()}`).join('\n');
      },
      close,
    };
    return cluster;
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Counts the rows of the analysis and webhook-delivery jobs that are still to run. The storage
 * sweeps are left out: one a killed worker was running stays active until it expires, which
 * says nothing about the scans.
 */
export async function pendingJobs(database: Database): Promise<number> {
  const { rows } = await database.executor.executeSql(
    `select count(*)::int as n from pgboss.job where state in ('created', 'retry', 'active') and name = any($1::text[])`,
    [[ANALYZE_SCAN_JOB, WEBHOOK_DELIVERY_JOB]],
  );
  return (rows[0] as { n: number }).n;
}

const IMAGES = [
  { file: 'brain-glioma-1.jpg', scanType: 'brain-mri' },
  { file: 'brain-notumor-1.jpg', scanType: 'brain-mri' },
  { file: 'chest-normal-1.jpeg', scanType: 'chest-xray' },
  { file: 'chest-bacterial-1.jpeg', scanType: 'chest-xray' },
].map((i) => ({ ...i, data: readFileSync(path.join(FIXTURES, 'images', i.file)) }));

/** Uploads the i-th test image (4 fixtures in turn, 5 patients) through the API at `base`. */
export async function uploadTo(base: string, auth: Record<string, string>, i: number): Promise<Response> {
  const img = IMAGES[i % IMAGES.length]!;
  const form = new FormData();
  form.set('image', new Blob([img.data]), img.file);
  form.set('patientId', `CLUSTER-${i % 5}`);
  form.set('patientName', `Cluster Patient ${i % 5}`);
  form.set('scanType', img.scanType);
  return fetch(`${base}/api/scans`, { method: 'POST', body: form, headers: auth });
}

/**
 * An upload of one fixture image whose body is half sent: `sendRest` sends the other half,
 * `response` is the answer (status 0 and the error's message for a cut connection, which the
 * caller's assertion then reports). For the shutdown tests: a signal while a body arrives.
 */
export function halfSentUpload(
  port: number,
  auth: Record<string, string>,
  upload: { patientId: string; patientName: string; scanType: string; file: string },
): { response: Promise<{ status: number; text: string }>; sendRest: () => void } {
  const body = multipart([
    { name: 'patientId', value: upload.patientId },
    { name: 'patientName', value: upload.patientName },
    { name: 'scanType', value: upload.scanType },
    { name: 'image', filename: 'scan.jpg', contentType: 'image/jpeg', data: readFileSync(path.join(FIXTURES, 'images', upload.file)) },
  ]);
  const half = Math.floor(body.payload.length / 2);
  let sendRest: () => void = () => undefined;
  const response = new Promise<{ status: number; text: string }>((resolve) => {
    const req = http.request(
      { host: '127.0.0.1', port, path: '/api/scans', method: 'POST', headers: { ...body.headers, ...auth, 'content-length': String(body.payload.length) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', (err) => resolve({ status: 0, text: err.message }));
    req.write(body.payload.subarray(0, half));
    sendRest = () => req.end(body.payload.subarray(half));
  });
  return { response, sendRest: () => sendRest() };
}

// ---------------------------------------------------------------------------------------------
// A throwaway PostgreSQL server, for the fault tests that restart it (never the shared one).

export interface ThrowawayPostgres {
  adminUrl: string;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

const PG_BIN = process.env.TEST_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** initdb refuses to run as root: as root, the server runs as the postgres user. */
function asPostgresUser(cmd: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
}

export async function pgBinAvailable(): Promise<boolean> {
  try {
    await run(path.join(PG_BIN, 'pg_ctl'), ['--version']);
    return true;
  } catch {
    return false;
  }
}

export async function startThrowawayPostgres(): Promise<ThrowawayPostgres> {
  const dir = mkdtempSync(path.join(tmpdir(), 'imagemedix-pg-'));
  const root = process.getuid?.() === 0;
  const data = path.join(dir, 'data');
  const port = await freePort();
  const pgCtl = (args: string[]) => {
    const [cmd, full] = asPostgresUser(path.join(PG_BIN, 'pg_ctl'), args);
    return run(cmd, full, { timeout: 120_000 });
  };
  const startArgs = ['-D', data, '-l', path.join(dir, 'server.log'), '-w', '-t', '90', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`];
  try {
    if (root) {
      const ids = await run('id', ['-u', 'postgres']);
      const gid = await run('id', ['-g', 'postgres']);
      chownSync(dir, Number(ids.stdout.trim()), Number(gid.stdout.trim()));
    }
    const [cmd, args] = asPostgresUser(path.join(PG_BIN, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync']);
    await run(cmd, args, { timeout: 120_000 });
    await pgCtl(['start', ...startArgs]);
  } catch (err) {
    await pgCtl(['stop', '-D', data, '-m', 'immediate']).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async restart() {
      // An abrupt stop (as a crash or a failover would): every connection is cut at once.
      await pgCtl(['stop', '-D', data, '-m', 'immediate']);
      await pgCtl(['start', ...startArgs]);
    },
    async stop() {
      await pgCtl(['stop', '-D', data, '-m', 'immediate']).catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
