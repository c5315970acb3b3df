/**
 * A worker process alone (`npm run worker`): analysis and webhook-delivery jobs from the
 * shared PostgreSQL database, no HTTP. Run as many as the hardware allows.
 */
import Fastify from 'fastify';
import pino from 'pino';
import { registerMetricsRoute } from './platform/metrics/routes.js';
import { openDatabase } from './platform/db/index.js';
import { loggerOptions } from './platform/logging.js';
import { createRuntime } from './runtime.js';
import { loadConfigOrExit, onShutdown } from './platform/process.js';

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const log = pino(loggerOptions(config.logLevel)).child({ process: 'worker' });
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, preparedStatements: config.databasePreparedStatements });
  if (database.kind === 'pglite') {
    log.warn('embedded PGlite is single-process: a separate worker needs DATABASE_URL; use npm start instead');
    process.exit(2);
  }
  const runtime = await createRuntime(config, database, { log });
  await runtime.startWorkers();
  log.info({ concurrency: config.worker.concurrency }, 'worker started');
  // A worker has no API; Prometheus scrapes its /metrics on METRICS_PORT (with METRICS_TOKEN).
  const metricsServer = config.metrics.token && config.metrics.port ? Fastify({ logger: false }) : null;
  if (metricsServer && config.metrics.token && config.metrics.port) {
    registerMetricsRoute(metricsServer, runtime.ctx.metrics, config.metrics.token);
    await metricsServer.listen({ port: config.metrics.port, host: config.host });
    log.info({ port: config.metrics.port }, 'worker metrics at /metrics');
  }
  onShutdown(log, {
    steps: [async () => metricsServer?.close(), () => runtime.stop(), () => database.close()],
    beforeForcedExit: () => database.close(),
  });
}

main().catch((err: unknown) => {
  console.error('ImageMedix worker failed to start:', err instanceof Error ? err.message : err);
  process.exit(1);
});
