/**
 * Measures the orientation refusal as served (analyzeScan): every image of a task's test/ (and
 * chest external/) in its 8 forms (as stored, mirrored left-right, rotated 90 degrees either way,
 * rotated 180, flipped top to bottom, and the two rotations of the mirror), uploaded with its
 * type declared and without one. For each form: how many the served pipeline answers, how many
 * the orientation check refuses (each of them an answer without it, since it runs last), and what
 * else refused the rest. A rotated scan answered without the check and refused by it is caught;
 * an upright or mirrored one refused by it is a false refusal.
 *
 * Uploaded without a type, an image the router sends to brain that looks like a chest X-ray
 * turned a quarter turn, and that the chest model takes for one turned back, is refused as turned
 * (routing.ts, turnedChest): those are counted apart, with how many the brain model would have answered without that refusal.
 * --forms and --mode narrow the run (e.g. the quarter turns, undeclared).
 *
 *
 *   tsx scripts/measure-orientation.ts [--task chest-xray] [--forms cw90 ...] [--mode declared|undeclared]
 *     [--datasets ../shared/datasets] [--models-dir models] [--json out.json]
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';

import sharp from 'sharp';

import { analyzeImage, analyzeScan } from '../src/ml/inference.js';
import { ModelRegistry, type ModelTask } from '../src/ml/registry.js';
import { datasetImages } from './lib/dataset-images.js';

const { values } = parseArgs({
  options: {
    task: { type: 'string', multiple: true },
    forms: { type: 'string', multiple: true },
    mode: { type: 'string', multiple: true },
    datasets: { type: 'string', default: path.resolve('../shared/datasets') },
    'models-dir': { type: 'string' },
    json: { type: 'string' },
  },
});
const tasks = (values.task ?? ['chest-xray']) as ModelTask[];
const datasets = path.resolve(values.datasets);
const registry = await ModelRegistry.load({ dir: values['models-dir'] });

type Pixel = (x: number, y: number, w: number, h: number) => [number, number];
/** Each form as where its pixel (x, y) comes from in the stored image, and its size. */
const FORMS: [string, Pixel, boolean][] = [
  ['upright', (x, y) => [x, y], false],
  ['mirrored', (x, y, w) => [w - 1 - x, y], false],
  ['cw90', (x, y, w, h) => [y, h - 1 - x], true],
  ['cw90 mirrored', (x, y, w, h) => [w - 1 - y, h - 1 - x], true],
  ['rot180', (x, y, w, h) => [w - 1 - x, h - 1 - y], false],
  ['flipV', (x, y, w, h) => [x, h - 1 - y], false],
  ['ccw90', (x, y, w) => [w - 1 - y, x], true],
  ['ccw90 mirrored', (x, y) => [y, x], true],
];

function transform(rgb: Uint8Array, width: number, height: number, from: Pixel, swap: boolean) {
  const w = swap ? height : width;
  const h = swap ? width : height;
  const out = new Uint8Array(rgb.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      // (x, y) in the form comes from (sx, sy) in the stored image, sizes given as the stored image's.
      const [sx, sy] = from(x, y, width, height);
      const s = (sy * width + sx) * 3;
      const d = (y * w + x) * 3;
      out[d] = rgb[s]!;
      out[d + 1] = rgb[s + 1]!;
      out[d + 2] = rgb[s + 2]!;
    }
  }
  return { data: out, width: w, height: h, channels: 3 as const };
}

const forms = values.forms ? FORMS.filter(([name]) => values.forms!.includes(name)) : FORMS;
const modes = (values.mode ?? ['declared', 'undeclared']) as ('declared' | 'undeclared')[];

interface Tally {
  n: number;
  answered: number;
  /** Refused by the orientation check: the pipeline without it would have answered. */
  orientation: number;
  /** Other refusals, by check. */
  refused: Record<string, number>;
  /** Answered by the other type's model (undeclared uploads only). */
  answeredAsOther: number;
  /** Refused as a chest X-ray turned a quarter turn (undeclared only). */
  turnedChest: number;
  /** Of those, answered by the brain model without that refusal. */
  turnedChestBrainAnswers: number;
}

const report: Record<string, Record<'declared' | 'undeclared', Record<string, Tally>>> = {};
for (const task of tasks) {
  for (const split of ['test', 'external']) {
    const dir = path.join(datasets, task, split);
    let files: string[];
    try {
      files = await datasetImages(dir);
    } catch {
      continue;
    }
    const set = (report[`${task}/${split}`] = { declared: {}, undeclared: {} } as Record<'declared' | 'undeclared', Record<string, Tally>>);
    for (const file of files) {
      const { data, info } = await sharp(file).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
      if (info.channels !== 3) throw new Error(`${file}: ${info.channels} channels after removing alpha`);
      const rgb = new Uint8Array(data);
      for (const [name, from, swap] of forms) {
        const image = transform(rgb, info.width, info.height, from, swap);
        for (const mode of modes) {
          const t = (set[mode][name] ??= { n: 0, answered: 0, orientation: 0, refused: {}, answeredAsOther: 0, turnedChest: 0, turnedChestBrainAnswers: 0 });
          const { result } = await analyzeScan(registry, image, { scanType: mode === 'declared' ? task : null, heatmap: false });
          t.n++;
          if (!result.refused) {
            t.answered++;
            if (result.scanType !== task) t.answeredAsOther++;
          } else if (/^The image looks like a chest X-ray rotated 90 degrees/.test(result.reason)) {
            t.turnedChest++;
            const brain = await analyzeImage(registry.get('brain-mri'), image, { scanType: 'brain-mri', heatmap: false });
            if (!brain.result.refused) t.turnedChestBrainAnswers++;
          } else if (result.check === 'orientation') t.orientation++;
          else t.refused[result.check] = (t.refused[result.check] ?? 0) + 1;
        }
      }
    }
    for (const mode of modes) {
      console.log(`${task}/${split} (${files.length} images), type ${mode}:`);
      for (const [name, t] of Object.entries(set[mode])) {
        const before = t.answered + t.orientation;
        const other = Object.entries(t.refused).map(([c, v]) => `${c} ${v}`).join(', ');
        console.log(
          `  ${name.padEnd(15)} answered without the check ${String(before).padStart(4)}, refused by it ${String(t.orientation).padStart(4)}` +
            `${before ? ` (${((100 * t.orientation) / before).toFixed(1)}%)` : ''}, answered ${t.answered}` +
            `${t.answeredAsOther ? ` (${t.answeredAsOther} by the other model)` : ''}${other ? `; refused before it: ${other}` : ''}` +
            `${t.turnedChest ? `; refused as a turned chest X-ray ${t.turnedChest} (the brain model would have answered ${t.turnedChestBrainAnswers})` : ''}`,
        );
      }
    }
  }
}
if (values.json) {
  const run = { date: new Date().toISOString(), tasks, sets: report };
  await writeFile(values.json, JSON.stringify(run, null, 2) + '\n');
}
await registry.close();
