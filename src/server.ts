/**
 * The API process: configuration, database, logger, listen, signals, graceful shutdown.
 * `npm start` runs it with an in-process analysis worker unless WORKER_IN_PROCESS=false, so
 * N API processes and M `npm run worker` processes can share one PostgreSQL server.
 */
import pino from 'pino';
import { buildApp } from './app.js';
import { openDatabase } from './platform/db/index.js';
import { loggerOptions } from './platform/logging.js';
import { loadConfigOrExit, onShutdown } from './platform/process.js';
import { createRuntime } from './runtime.js';
import { warmUpUploads } from './scans/service.js';
import { bootstrapAdmin } from './users/bootstrap.js';

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const log = pino(loggerOptions(config.logLevel));
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, preparedStatements: config.databasePreparedStatements });
  log.info({ database: database.kind }, 'database ready, migrations applied');
  // API processes started together take turns: the second finds the admin the first created.
  await database.withStartupLock(() => bootstrapAdmin(database.db, config, log));

  const runtime = await createRuntime(config, database, { log });
  const app = await buildApp(runtime.ctx, { logger: log, compileSerializersAhead: true });
  // Before the port opens: a fresh process's first uploads would otherwise each pay for their
  // statement's first use on the server (docs/benchmarks/ingest.md). Only a speed-up: start-up
  // goes on without it. Not on PGlite, where it adds 1.6 s to start-up (WASM) for a gain not measured.
  if (database.kind === 'postgres') {
    const warmUpStart = performance.now();
    await warmUpUploads(runtime.ctx)
      .then(() => log.info({ ms: Math.round(performance.now() - warmUpStart) }, 'upload statements prepared'))
      // The error as the logger's serializer scrubs it (class, code, frames): a failed query's
      // message can carry its values.
      .catch((err: unknown) => log.warn({ err }, 'upload statements not prepared ahead of the first upload'));
  }
  if (config.worker.inProcess) {
    await runtime.startWorkers();
    log.info({ concurrency: config.worker.concurrency }, 'in-process analysis worker started');
  }
  await app.listen({ port: config.port, host: config.host });
  log.info(`ImageMedix API listening on ${config.publicUrl ?? `http://localhost:${config.port}`} (docs at /docs)`);
  // Listener closed and requests answered first (the in-process worker keeps running for the
  // jobs they enqueue), then the worker waits for its running jobs, then the database.
  onShutdown(log, {
    steps: [() => app.close(), () => runtime.stop(), () => database.close()],
    beforeForcedExit: () => database.close(),
  });
}

main().catch((err: unknown) => {
  console.error('ImageMedix failed to start:', err instanceof Error ? err.message : err);
  process.exit(1);
});
