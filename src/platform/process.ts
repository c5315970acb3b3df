/** Process plumbing shared by server.ts and worker.ts: config or exit, graceful shutdown. */
import type pino from 'pino';
import { ConfigError, loadConfig, type Config } from './config.js';

export function loadConfigOrExit(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`Configuration error: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
}

export interface ShutdownPlan {
  /** In order: stop taking work (close the listener), finish what is in flight, release what it used. */
  steps: Array<() => Promise<void>>;
  /**
   * Run when the steps overrun `timeoutMs`, before the process exits 1: closing the database
   * there lets embedded PGlite finish its statement and write its files whole, where an exit
   * in the middle of a write can leave a data directory that no longer opens.
   */
  beforeForcedExit?: () => Promise<void>;
  timeoutMs?: number;
}

/** How long `beforeForcedExit` may take before the process exits regardless. */
const FORCED_EXIT_GRACE_MS = 5_000;

/**
 * SIGTERM or SIGINT runs `plan.steps` once and exits 0 (1 if a step failed or they overran).
 * A second signal while they run (Ctrl-C twice, a process manager repeating SIGTERM) is only
 * logged: exiting then would stop PGlite in the middle of a write.
 */
export function onShutdown(log: pino.Logger, plan: ShutdownPlan): void {
  const { steps, beforeForcedExit, timeoutMs = 30_000 } = plan;
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) {
      log.warn({ signal }, 'already shutting down; waiting for the work in flight');
      return;
    }
    stopping = true;
    log.info({ signal }, 'shutting down: finishing in-flight requests and jobs');
    const force = setTimeout(() => {
      log.error({ timeoutMs }, 'shutdown took too long; closing the database and exiting');
      const grace = setTimeout(() => process.exit(1), FORCED_EXIT_GRACE_MS);
      grace.unref();
      void (beforeForcedExit?.() ?? Promise.resolve())
        .catch((err: unknown) => log.error({ err }, 'could not close the database cleanly'))
        .finally(() => process.exit(1));
    }, timeoutMs);
    force.unref();
    try {
      for (const step of steps) await step();
      process.exit(0);
    } catch (err) {
      log.error({ err }, 'error during shutdown');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/** Runs a command-line tool's main: its exit code, or 1 with the error's message (no stack) when it throws. */
export function runCommand(main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(err instanceof Error ? err.message : err);
      process.exitCode = 1;
    },
  );
}
