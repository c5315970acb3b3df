/**
 * Measures automatic scan-type routing as served (analyzeScan with no declared type):
 * the share of brain-mri and chest-xray images routed to their own model, on each test/ set
 * and chest external/, and the share of the reject set (scripts/make-reject-set.ts: synthetic
 * photographs, documents, blank frames, noise) refused. Also how often a declared type is
 * wrongly called a contradiction on valid images, and how many images are refused as a chest
 * X-ray turned a quarter turn (routing.ts, turnedChest; none of these is one).
 *
 *   tsx scripts/measure-routing.ts [--datasets ../shared/datasets] [--models-dir models] [--json out.json]
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';

import { analyzeScan, type AnalysisResult } from '../src/ml/inference.js';
import { ModelRegistry, type ModelTask } from '../src/ml/registry.js';
import { datasetImages } from './lib/dataset-images.js';

const { values } = parseArgs({
  options: {
    datasets: { type: 'string', default: path.resolve('../shared/datasets') },
    'models-dir': { type: 'string' },
    json: { type: 'string' },
  },
});
const datasets = path.resolve(values.datasets);
const registry = await ModelRegistry.load({ dir: values['models-dir'] });

interface SetResult {
  set: string;
  n: number;
  routedRight?: number;
  refusedAfterRouting?: number;
  falseContradictions?: number;
  refused?: number;
  /** Refused as a chest X-ray turned a quarter turn. */
  turnedChest?: number;
  byCategory?: Record<string, { n: number; refused: number }>;
  misrouted?: string[];
}
const results: SetResult[] = [];
/** Refused as a chest X-ray turned a quarter turn (routing.ts, turnedChestReason), sent without a type. */
const turnedChest = (result: AnalysisResult) => result.refused && /^The image looks like a chest X-ray rotated 90 degrees/.test(result.reason);

for (const [task, split] of [
  ['brain-mri', 'test'],
  ['chest-xray', 'test'],
  ['chest-xray', 'external'],
] as [ModelTask, string][]) {
  const files = await datasetImages(path.join(datasets, task, split));
  const r: SetResult = { set: `${task}/${split}`, n: files.length, routedRight: 0, refusedAfterRouting: 0, turnedChest: 0, falseContradictions: 0, misrouted: [] };
  for (const file of files) {
    const image = await readFile(file);
    const auto = await analyzeScan(registry, image, { scanType: null, heatmap: false });
    if (auto.result.routing?.scanType === task) r.routedRight!++;
    else r.misrouted!.push(path.relative(datasets, file));
    if (auto.result.refused) r.refusedAfterRouting!++;
    if (turnedChest(auto.result)) r.turnedChest!++;
    const declared = await analyzeScan(registry, image, { scanType: task, heatmap: false });
    if (declared.result.refused && declared.result.check === 'scan_type') r.falseContradictions!++;
  }
  results.push(r);
  console.log(
    `${r.set}: ${r.routedRight}/${r.n} routed right (${((100 * r.routedRight!) / r.n).toFixed(2)}%), ` +
      `${r.refusedAfterRouting} then refused (${r.turnedChest} of them as a turned chest X-ray), ${r.falseContradictions} declared-type false contradictions`,
  );
}

const rejectDir = await mkdtemp(path.join(tmpdir(), 'imagemedix-reject-'));
try {
  execFileSync(process.execPath, ['--import', 'tsx', 'scripts/make-reject-set.ts', '--out', rejectDir], { stdio: 'ignore' });
  const files = await datasetImages(rejectDir);
  const r: SetResult = { set: 'reject (non-medical)', n: files.length, refused: 0, turnedChest: 0, byCategory: {} };
  for (const file of files) {
    const category = path.basename(file).split('-')[0]!;
    const a = await analyzeScan(registry, await readFile(file), { scanType: null, heatmap: false });
    const c = (r.byCategory![category] ??= { n: 0, refused: 0 });
    c.n++;
    if (a.result.refused) {
      r.refused!++;
      c.refused++;
    }
    if (turnedChest(a.result)) r.turnedChest!++;
  }
  results.push(r);
  console.log(
    `${r.set}: ${r.refused}/${r.n} refused (${((100 * r.refused!) / r.n).toFixed(2)}%): ` +
      Object.entries(r.byCategory!).map(([k, v]) => `${k} ${v.refused}/${v.n}`).join(', ') +
      `; ${r.turnedChest} as a turned chest X-ray`,
  );
} finally {
  await rm(rejectDir, { recursive: true, force: true });
}

const valid = results.filter((r) => r.routedRight !== undefined);
const routed = valid.reduce((a, r) => a + r.routedRight!, 0);
const total = valid.reduce((a, r) => a + r.n, 0);
console.log(`all valid images: ${routed}/${total} routed right (${((100 * routed) / total).toFixed(2)}%)`);
if (values.json) {
  const models = registry.list().map((m) => `${m.id} ${m.version}`);
  await writeFile(values.json, JSON.stringify({ models, results, date: new Date().toISOString() }, null, 2) + '\n');
}
await registry.close();
