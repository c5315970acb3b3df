/**
 * Distribution of the refusal input-check statistics (src/ml/refusal.ts) over image folders,
 * to set and audit the thresholds. Set them on training images, never on test/.
 *
 *   tsx scripts/measure-input-checks.ts <dir> [<dir> ...]   (folders searched recursively)
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';

import { percentile } from '../src/ml/metrics.js';
import { preprocessImage, parsePreprocessingSpec } from '../src/ml/preprocess.js';
import { checkInput, DEFAULT_INPUT_THRESHOLDS, imageStats, type ImageStats } from '../src/ml/refusal.js';

const spec = parsePreprocessingSpec(JSON.parse(await readFile(new URL('../ml/preprocessing.json', import.meta.url), 'utf8')));

async function* images(dir: string): AsyncGenerator<string> {
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* images(p);
    else if (/\.(png|jpe?g)$/i.test(entry.name)) yield p;
  }
}

for (const dir of process.argv.slice(2)) {
  const stats: ImageStats[] = [];
  const refused: Record<string, number> = {};
  for await (const file of images(dir)) {
    const prepared = await preprocessImage(await readFile(file), spec);
    const s = imageStats(prepared.rgb, prepared.width, prepared.height);
    stats.push(s);
    const r = checkInput(s, 'chest-xray');
    if (r) refused[r.check] = (refused[r.check] ?? 0) + 1;
  }
  console.log(`${dir}: ${stats.length} images; refused by input checks: ${JSON.stringify(refused)}`);
  for (const key of ['grayStd', 'meanChroma', 'colourfulFraction', 'highFrequencyRatio'] as const) {
    const v = stats.map((s) => s[key]);
    const q = [0, 0.1, 1, 50, 99, 99.9, 100].map((p) => `p${p} ${percentile(v, p).toPrecision(3)}`).join('  ');
    console.log(`  ${key.padEnd(20)} ${q}`);
  }
}
console.log(`thresholds: ${JSON.stringify(DEFAULT_INPUT_THRESHOLDS)}`);
