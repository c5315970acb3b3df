/**
 * npm run bench:audit [-- --duration 8 --connections 10 --rounds 2 --db pglite|postgres]
 *
 * What the audit trail costs: the same app on the same database, serving GET /api/patients/:id
 * (an audited read of one patient with history, notes and scans) with the audit trail writing
 * and with it replaced by a no-op writer, alternating rounds in one run so both see the same
 * machine load. Then the event's own write alone, one after another (the time an audited
 * request now waits before its answer leaves), which a loaded machine blurs far less than
 * throughput. Prints Markdown for docs/benchmarks/audit.md.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { createTestApp } from '../../test/helpers/app.js';
import { noAuditLog } from './log.js';
import type { NewAuditRow } from './repository.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '8' },
    connections: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '2' },
    db: { type: 'string', default: 'pglite' },
  },
});

interface Row {
  mode: string;
  rps: number;
  p50: number;
  p99: number;
  errors: number;
}

const kind = values.db === 'postgres' ? 'postgres' : 'pglite';

async function run(mode: 'audit on' | 'audit off'): Promise<Row> {
  const t = await createTestApp(kind, {
    env: { RATE_LIMIT_MAX: '1000000' },
    build: (ctx) => {
      if (mode === 'audit off') ctx.audit = noAuditLog;
      return {};
    },
  });
  try {
    const doctor = await t.user();
    const p = await t.patient(doctor);
    for (let i = 0; i < 5; i++) {
      await t.app.inject({ method: 'POST', url: `/api/patients/${p._id}/notes`, headers: doctor.auth, payload: { content: `Note ${i}` } });
    }
    const address = await t.app.listen({ port: 0, host: '127.0.0.1' });
    const r = await autocannon({
      url: `${address}/api/patients/${p._id}`,
      headers: doctor.auth,
      connections: Number(values.connections),
      duration: Number(values.duration),
    });
    return { mode, rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, errors: r.errors + r.timeouts + r.non2xx };
  } finally {
    await t.close();
  }
}

/** Milliseconds of each of `n` sequential writes of one patient.read event. */
async function writeTimes(n: number): Promise<number[]> {
  const t = await createTestApp(kind);
  try {
    const doctor = await t.user();
    const p = await t.patient(doctor);
    const row: NewAuditRow = {
      actorId: doctor.id,
      actorRole: 'doctor',
      action: 'patient.read',
      resourceType: 'patient',
      resourceId: p._id,
      patientIds: [p._id],
      ip: '127.0.0.1',
      outcome: 'success',
      statusCode: 200,
      detail: null,
    };
    for (let i = 0; i < 20; i++) await t.ctx.audit.write([row]);
    const times: number[] = [];
    for (let i = 0; i < n; i++) {
      const start = process.hrtime.bigint();
      await t.ctx.audit.write([row]);
      times.push(Number(process.hrtime.bigint() - start) / 1e6);
    }
    return times.sort((a, b) => a - b);
  } finally {
    await t.close();
  }
}

const rows: Row[] = [];
for (let i = 0; i < Number(values.rounds); i++) {
  rows.push(await run('audit off'));
  rows.push(await run('audit on'));
}
const load = os.loadavg().map((l) => l.toFixed(1)).join(' ');
console.log(`Machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}, load average ${load}`);
console.log(`GET /api/patients/:id, ${kind === 'postgres' ? 'PostgreSQL server' : 'PGlite'}, ${values.connections} connections, ${values.duration} s per round\n`);
console.log('| round | mode | requests/s | p50 ms | p99 ms | errors |');
console.log('| --- | --- | --- | --- | --- | --- |');
rows.forEach((r, i) => console.log(`| ${Math.floor(i / 2) + 1} | ${r.mode} | ${r.rps.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.errors} |`));
const mean = (mode: string, k: 'rps' | 'p50' | 'p99') => {
  const xs = rows.filter((r) => r.mode === mode).map((r) => r[k]);
  return xs.reduce((a, b) => a + b, 0) / xs.length;
};
console.log(
  `\nMean: audit on ${mean('audit on', 'rps').toFixed(0)} req/s (p50 ${mean('audit on', 'p50').toFixed(1)} ms), audit off ${mean('audit off', 'rps').toFixed(0)} req/s (p50 ${mean('audit off', 'p50').toFixed(1)} ms): ${((1 - mean('audit on', 'rps') / mean('audit off', 'rps')) * 100).toFixed(1)}% fewer requests/s with the trail.`,
);
const times = await writeTimes(500);
const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!.toFixed(2);
console.log(`\nOne event's write alone (${times.length} in a row): p50 ${at(0.5)} ms, p90 ${at(0.9)} ms, p99 ${at(0.99)} ms.`);
process.exit(0);
