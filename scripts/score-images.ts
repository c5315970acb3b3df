/**
 * Scores image files through the served chest or brain pipeline (analyzeScan with the type
 * declared: decode, preprocessing, the int8 graph with its flip averaging, the refusal checks)
 * and writes one JSON line per file: its logits (null when an input check refused it before the
 * model), whether it was refused, and its out-of-distribution distance. For measurements that
 * edit images and compare what the served model makes of them (ml/measure_overlays.py). With
 * --heatmaps <dir> it also writes the heatmap PNG a user is shown for each file it did not refuse
 * (<dir>/<n>.png for the nth path from 0, named in its line's `heatmap`), to draw beside occlusion maps.
 *
 *   npx tsx scripts/score-images.ts --model chest-xray --list <file with one path a line> --out <jsonl> [--models-dir models] [--heatmaps <dir>]
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { analyzeScan } from '../src/ml/inference.js';
import { ModelRegistry, type ModelTask } from '../src/ml/registry.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'chest-xray' },
    list: { type: 'string' },
    out: { type: 'string' },
    'models-dir': { type: 'string', default: 'models' },
    heatmaps: { type: 'string' },
  },
});
if (!values.list || !values.out) {
  console.error('usage: score-images.ts --model <id> --list <paths file> --out <jsonl> [--models-dir <dir>] [--heatmaps <dir>]');
  process.exit(2);
}
const id = values.model as ModelTask;
const registry = await ModelRegistry.load({ dir: path.resolve(values['models-dir']), only: [id] });
const model = registry.get(id);
const heatmaps = values.heatmaps;
if (heatmaps) await mkdir(heatmaps, { recursive: true });
const lines: string[] = [];
const files = (await readFile(values.list, 'utf8')).split('\n').filter((l) => l.trim() !== '');
for (const [i, file] of files.entries()) {
  const a = await analyzeScan({ get: () => model }, await readFile(file), { scanType: id, heatmap: heatmaps !== undefined });
  let heatmap: string | null = null;
  if (heatmaps && a.heatmap) {
    heatmap = path.join(heatmaps, `${i}.png`);
    await writeFile(heatmap, a.heatmap.png);
  }
  lines.push(JSON.stringify({ file, refused: a.result.refused, logits: a.scores?.logits ?? null, ood: a.scores?.oodDistance ?? null, heatmap }));
}
await writeFile(values.out, lines.join('\n') + '\n');
await registry.close();
