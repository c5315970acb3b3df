/**
 * npm run bench:inference -- --model <scan type> [--n 200] [--models-dir <dir>]
 *                            [--out docs/benchmarks/inference.md]
 *
 * Model time per image (session.run only, batch 1) with 1 and 2 intra-op threads, and whole
 * analyses through the job worker's thread pool (how the worker runs them), each with its wall
 * time and the process's CPU time per image. The input is a fixed pseudo-random tensor: a CNN's
 * time does not depend on the pixels. Writes nothing unless --out is given; then the model's
 * section of that Markdown file is replaced.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

import * as ort from 'onnxruntime-node';

import { runModel } from './inference.js';
import { mean, percentile } from './metrics.js';
import { createOnnxAnalyzer } from '../analysis/analyzer.js';
import { REPO_ROOT } from '../platform/config.js';
import { DEFAULT_MODELS_DIR, ModelRegistry, type LoadedModel } from './registry.js';
import { isScanType, type ScanType } from '../scan-types/index.js';
import { rng } from './synthetic.js';
import { runCommand } from '../platform/process.js';

interface Row {
  setting: string;
  p50: number;
  p95: number;
  mean: number;
  perSecond: number;
  /** CPU time of the whole process (all threads, the decoder's pool too) per image. */
  cpuMs: number;
}

/** User + system CPU of this process since `from`, in ms. */
function cpuMsSince(from: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(from);
  return (used.user + used.system) / 1000;
}

async function timeRuns(model: LoadedModel, input: Float32Array, n: number, concurrency: number): Promise<Row> {
  for (let i = 0; i < 10; i++) await runModel(model, input);
  const times: number[] = [];
  const start = performance.now();
  const cpu = process.cpuUsage();
  let next = 0;
  const loop = async () => {
    while (next < n) {
      next++;
      const t0 = performance.now();
      await runModel(model, input);
      times.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  const wall = performance.now() - start;
  const cpuMs = cpuMsSince(cpu) / n;
  return { setting: '', p50: percentile(times, 50), p95: percentile(times, 95), mean: mean(times), perSecond: (n / wall) * 1000, cpuMs };
}

/**
 * Whole analyses (decode, checks, model, heatmap PNG) through the job worker's pool of two
 * threads, two at a time: what one worker process with WORKER_CONCURRENCY=2 sustains.
 */
async function timePool(id: ScanType, modelsDir: string, n: number): Promise<Row> {
  const fixtures = path.join(REPO_ROOT, 'test', 'fixtures', 'ml');
  const file = (await readdir(fixtures)).find((f) => f.startsWith(`${id}--`) && f.endsWith('.png'));
  if (!file) throw new Error(`no fixture image for ${id} in ${fixtures}`);
  const png = await readFile(path.join(fixtures, file));
  const analyzer = createOnnxAnalyzer({ modelsDir, threads: 2 });
  try {
    // Two at a time, so both threads have loaded their models before the timed runs.
    await Promise.all(
      [0, 1].map(async () => {
        for (let i = 0; i < 5; i++) await analyzer.analyze(id, { png }, async () => undefined);
      }),
    );
    const times: number[] = [];
    let next = 0;
    const start = performance.now();
    const cpu = process.cpuUsage();
    const loop = async () => {
      while (next < n) {
        next++;
        const t0 = performance.now();
        await analyzer.analyze(id, { png }, async () => undefined);
        times.push(performance.now() - t0);
      }
    };
    await Promise.all([loop(), loop()]);
    const wall = performance.now() - start;
    const cpuMs = cpuMsSince(cpu) / n;
    return {
      setting: 'whole analysis, worker pool of 2 threads, 2 at a time',
      p50: percentile(times, 50),
      p95: percentile(times, 95),
      mean: mean(times),
      perSecond: (n / wall) * 1000,
      cpuMs,
    };
  } finally {
    await analyzer.close();
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      n: { type: 'string', default: '200' },
      'models-dir': { type: 'string' },
      out: { type: 'string' },
    },
  });
  const id = values.model;
  const n = Number(values.n);
  if (!isScanType(id) || !(Number.isInteger(n) && n > 0)) {
    console.error('usage: npm run bench:inference -- --model <id> [--n 200] [--models-dir <dir>] [--out <file.md>]');
    return 2;
  }
  const dir = values['models-dir'] ? path.resolve(values['models-dir']) : undefined;
  const rows: Row[] = [];
  let version = '';
  const settings = [
    { label: 'batch 1, 1 thread', threads: 1, concurrency: 1 },
    { label: 'batch 1, 2 threads', threads: 2, concurrency: 1 },
  ];
  for (const s of settings) {
    const registry = await ModelRegistry.load({ dir, intraOpNumThreads: s.threads, only: [id] });
    const model = registry.get(id);
    version = model.manifest.version;
    const { width, height } = model.manifest.input;
    const r = rng(7);
    const input = Float32Array.from({ length: width * height }, () => r() * 4 - 2);
    rows.push({ ...(await timeRuns(model, input, n, s.concurrency)), setting: s.label });
    await registry.close();
  }

  rows.push(await timePool(id, dir ?? DEFAULT_MODELS_DIR, n));

  const cpus = os.cpus();
  const machine = `${cpus[0]?.model ?? 'unknown CPU'} x${cpus.length} (${os.platform()} ${os.arch()}), Node ${process.version}, onnxruntime-node ${ort.env.versions.common}`;
  const table = [
    '| setting | p50 ms | p95 ms | mean ms | images/s | CPU ms per image |',
    '|---|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.setting} | ${r.p50.toFixed(2)} | ${r.p95.toFixed(2)} | ${r.mean.toFixed(2)} | ${r.perSecond.toFixed(1)} | ${r.cpuMs.toFixed(2)} |`,
    ),
  ].join('\n');
  console.log(`${id} ${version}: model time per image (session.run), ${n} runs each\n${machine}\n\n${table}`);

  if (values.out) {
    const file = path.resolve(values.out);
    const section = [
      `<!-- bench:${id}:start -->`,
      `## ${id} ${version}`,
      '',
      `Measured ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC on ${machine}, load average ${os.loadavg().map((l) => l.toFixed(2)).join(', ')} (1, 5, 15 min) at the end; ` +
        `${n} runs per setting after 10 warm-up runs. CPU ms per image: the process's user + system time (every thread) over the runs, divided by the images: ` +
        'what an image costs the machine, which a loaded machine changes less than the wall times.',
      '',
      table,
      `<!-- bench:${id}:end -->`,
    ].join('\n');
    let doc = existsSync(file)
      ? await readFile(file, 'utf8')
      : '# Inference benchmark\n\nModel time per image (`session.run` only, batch 1, 224 x 224) and whole analyses through the worker pool, from `npm run bench:inference`.\n';
    const re = new RegExp(`<!-- bench:${id}:start -->[\\s\\S]*?<!-- bench:${id}:end -->`);
    doc = re.test(doc) ? doc.replace(re, section) : `${doc.trimEnd()}\n\n${section}\n`;
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, doc);
    console.log(`\nwrote ${file}`);
  }
  return 0;
}

runCommand(main);
