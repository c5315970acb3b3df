/**
 * A worker process alone (`npm run worker`): analysis and webhook-delivery jobs from the
 * shared PostgreSQL database, no HTTP. Run as many as the hardware allows.
 */
import pino from 'pino';
import { openDatabase } from './platform/db/index.js';
import { loggerOptions } from './platform/logging.js';
import { createRuntime } from './runtime.js';
import { loadConfigOrExit, onShutdown } from './platform/process.js';

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const log = pino(loggerOptions(config.logLevel)).child({ process: 'worker' });
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  if (database.kind === 'pglite') {
    log.warn('embedded PGlite is single-process: a separate worker needs DATABASE_URL; use npm start instead');
    process.exit(2);
  }
  const runtime = await createRuntime(config, database, { log });
  await runtime.startWorkers();
  log.info({ concurrency: config.worker.concurrency }, 'worker started');
  onShutdown(log, [() => runtime.stop(), () => database.close()]);
}

main().catch((err: unknown) => {
  console.error('ImageMedix worker failed to start:', err instanceof Error ? err.message : err);
  process.exit(1);
});
