/**
 * A whole application on a fresh test database, plus factories that make each test's own
 * users and patients (unique emails and ids), so no test depends on another's leftovers.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildApp, type BuildOptions } from '../../src/app.js';
import { after, before } from 'node:test';
import pino, { type Logger } from 'pino';
import type { Analyzer } from '../../src/analysis/analyze.job.js';
import type { AppContext } from '../../src/context.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { loadConfig, type Config } from '../../src/platform/config.js';
import { createUser, type Role } from '../../src/users/service.js';
import { openTestDatabase, type DbKind, type TestDatabase } from './db.js';

export interface TestApp {
  app: FastifyInstance;
  ctx: AppContext;
  runtime: Runtime;
  database: TestDatabase;
  config: Config;
  dataDir: string;
  /** A new user with a unique email; `token` is a real login token. */
  user(opts?: { role?: Role; name?: string; specialization?: string }): Promise<TestUser>;
  /** A patient created through the API by `owner`. */
  patient(owner: TestUser, fields?: Record<string, unknown>): Promise<{ _id: string; patientId: string; name: string }>;
  close(): Promise<void>;
}

export interface TestUser {
  id: string;
  email: string;
  password: string;
  name: string;
  role: Role;
  token: string;
  auth: { authorization: string };
}

export function uniqueId(prefix = 'PT'): string {
  return `${prefix}-${randomBytes(5).toString('hex').toUpperCase()}`;
}

export interface TestAppOptions {
  env?: Record<string, string>;
  build?: (ctx: AppContext) => BuildOptions;
  /** Work analysis and webhook jobs in this process (default false: tests call handlers). */
  worker?: boolean;
  analyzer?: Analyzer;
  analysisExpireInSeconds?: number;
  maintenanceIntervalSeconds?: number;
  /** The process logger (queue, jobs) and, unless `build` says otherwise, the app's. */
  log?: Logger;
  /** Changes settings no environment variable may set (e.g. an http OIDC issuer on loopback). */
  adjustConfig?: (config: Config) => void;
}

export async function createTestApp(kind: DbKind, opts: TestAppOptions = {}): Promise<TestApp> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'imagemedix-test-'));
  const config = loadConfig({
    DATA_DIR: dataDir,
    JWT_SECRET: randomBytes(32).toString('hex'),
    RATE_LIMIT_MAX: '100000',
    LOG_LEVEL: 'silent',
    PUBLIC_URL: 'http://imagemedix.test',
    WEBHOOK_ALLOW_PRIVATE: 'true',
    ...opts.env,
  });
  opts.adjustConfig?.(config);
  const database = await openTestDatabase(kind);
  const log = opts.log ?? pino({ level: 'silent' });
  const runtime = await createRuntime(config, database, {
    log,
    supervise: opts.worker ?? false,
    analyzer: opts.analyzer,
    analysisExpireInSeconds: opts.analysisExpireInSeconds,
    maintenanceIntervalSeconds: opts.maintenanceIntervalSeconds,
  });
  const ctx = runtime.ctx;
  if (opts.worker) await runtime.startWorkers();
  const app = await buildApp(ctx, { logger: opts.log ?? false, ...(opts.build?.(ctx) ?? {}) });
  await app.ready();

  const t: TestApp = {
    app,
    ctx,
    runtime,
    database,
    config,
    dataDir,
    async user({ role = 'doctor', name, specialization } = {}) {
      const email = `user-${randomUUID()}@hospital.test`;
      const password = `pw-${randomBytes(8).toString('hex')}`;
      const displayName = name ?? `Dr ${randomBytes(3).toString('hex')}`;
      const row = await createUser(database.db, { email, password, name: displayName, role, specialization });
      const token = await ctx.tokens.issue(row);
      return { id: row.id, email, password, name: displayName, role, token, auth: { authorization: `Bearer ${token}` } };
    },
    async patient(owner, fields = {}) {
      const res = await app.inject({
        method: 'POST',
        url: '/api/patients',
        headers: owner.auth,
        payload: { patientId: uniqueId(), name: 'Test Patient', ...fields },
      });
      if (res.statusCode !== 201) throw new Error(`patient factory: ${res.statusCode} ${res.body}`);
      return res.json();
    },
    async close() {
      await app.close();
      await runtime.stop();
      await database.destroy();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
  return t;
}

export interface UseTestAppOptions extends TestAppOptions {
  /** Runs once the app is built, before the block's first test: keep `t` and make the block's users here. */
  setup: (t: TestApp) => Promise<void>;
}

/**
 * The test application of a describe block: built (with `setup`) before its first test and
 * closed after its last, even when a test failed, or when `setup` did after the app was built.
 */
export function useTestApp(kind: DbKind, { setup, ...opts }: UseTestAppOptions): void {
  let built: TestApp | null = null;
  before(async () => {
    built = await createTestApp(kind, opts);
    await setup(built);
  });
  after(() => built?.close());
}
