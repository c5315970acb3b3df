/**
 * The API process: configuration, database, logger, listen, signals, graceful shutdown.
 * `npm start` runs this with an in-process analysis worker unless WORKER_IN_PROCESS=false.
 */
import pino from 'pino';
import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './platform/config.js';
import { openDatabase } from './platform/db/index.js';
import { loggerOptions } from './platform/logging.js';
import { createContext } from './context.js';
import { bootstrapAdmin } from './users/bootstrap.js';
import { features, startBackground } from './features.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`Configuration error: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  const log = pino(loggerOptions(config.logLevel));
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  log.info({ database: database.kind }, 'database ready, migrations applied');
  await bootstrapAdmin(database.db, config, log);

  const ctx = createContext(config, database);
  const background = await startBackground(ctx, log);
  const app = await buildApp(ctx, { logger: log, features: features(background) });
  await app.listen({ port: config.port, host: config.host });
  log.info(`ImageMedix API listening on ${config.publicUrl ?? `http://localhost:${config.port}`} (docs at /docs)`);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down: finishing in-flight requests and jobs');
    const force = setTimeout(() => {
      log.error('shutdown took too long, exiting');
      process.exit(1);
    }, 30_000);
    force.unref();
    try {
      await app.close();
      await background.stop();
      await database.close();
      process.exit(0);
    } catch (err) {
      log.error({ err }, 'error during shutdown');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((err: unknown) => {
  console.error('ImageMedix failed to start:', err instanceof Error ? err.message : err);
  process.exit(1);
});
