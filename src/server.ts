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
import { bootstrapAdmin } from './users/bootstrap.js';

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const log = pino(loggerOptions(config.logLevel));
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, preparedStatements: config.databasePreparedStatements });
  log.info({ database: database.kind }, 'database ready, migrations applied');
  // API processes started together take turns: the second finds the admin the first created.
  await database.withStartupLock(() => bootstrapAdmin(database.db, config, log));

  const runtime = await createRuntime(config, database, { log });
  const app = await buildApp(runtime.ctx, { logger: log });
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
