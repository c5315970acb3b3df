/**
 * A process whose shutdown never finishes, for the forced-exit test (src/platform/shutdown.test.ts):
 * PGlite in the data directory given as argument, a loop writing rows into it, and onShutdown
 * with a step that never ends and a short time allowed. Prints "writing" once rows are written.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import pino from 'pino';
import { openDatabase } from '../../src/platform/db/index.js';
import { onShutdown } from '../../src/platform/process.js';

const database = await openDatabase({ databaseUrl: null, dataDir: process.argv[2]! });
await database.executor.executeSql('create table if not exists shutdown_writes (id serial primary key, at timestamptz default now())');
let writes = 0;
// Writes go on while the shutdown waits: the forced exit comes in the middle of them.
const writer = async () => {
  for (;;) {
    await database.executor.executeSql('insert into shutdown_writes default values');
    if (++writes === 20) console.log('writing');
    // PGlite answers without leaving the microtask queue: without a turn of the event loop
    // between writes, neither the signal nor the timer of the forced exit would ever run.
    await nextTurn();
  }
};
writer().catch(() => undefined); // ends with "PGlite is closed" once the forced exit closes it
onShutdown(pino(), {
  steps: [() => new Promise<void>(() => undefined)],
  beforeForcedExit: () => database.close(),
  timeoutMs: 1_500,
});
