/**
 * A worker process for the "worker dies mid-job" test: a real runtime over DATABASE_URL whose
 * analyzer stalls at the inference stage, so the test can kill -9 it while the job is active.
 * Prints "ready" once it polls for jobs.
 */
import pino from 'pino';
import { loadConfig } from '../../src/platform/config.js';
import { openDatabase } from '../../src/platform/db/index.js';
import { createRuntime } from '../../src/runtime.js';

const config = loadConfig(process.env);
const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: null });
const runtime = await createRuntime(config, database, {
  log: pino({ level: 'silent' }),
  analysisExpireInSeconds: Number(process.env.TEST_EXPIRE_SECONDS ?? 3),
  maintenanceIntervalSeconds: 1,
  analyzer: {
    async analyze(_scanType, _png, onStage) {
      await onStage('preprocess');
      await onStage('inference');
      await new Promise(() => undefined); // never finishes: the test kills this process
      throw new Error('unreachable');
    },
  },
});
await runtime.startWorkers();
console.log('ready');
