/**
 * Picks one test image per class of each installed model and stores it as a 224 px PNG in
 * test/fixtures/ml/<model>--<label>.png, with the attribution next to them. The pick is the
 * first image (by file name) the model answers correctly and confidently, so the fixture
 * tests check the pipeline, not the model's hard cases (the eval covers those).
 *
 *   tsx scripts/make-ml-fixtures.ts [--models-dir models] [--datasets ../shared/datasets]
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import sharp from 'sharp';

import { analyzeImage } from '../src/ml/inference.js';
import { ModelRegistry } from '../src/ml/registry.js';

const ROOT = path.resolve(fileURLToPath(new URL('..', import.meta.url)));
const { values } = parseArgs({
  options: {
    'models-dir': { type: 'string', default: path.join(ROOT, 'models') },
    datasets: { type: 'string', default: path.join(ROOT, '..', 'shared', 'datasets') },
  },
});
const OUT = path.join(ROOT, 'test', 'fixtures', 'ml');
const ATTRIBUTION = {
  'brain-mri': 'Nickparvar, M. Brain Tumor MRI Dataset (Kaggle), CC0 1.0',
  'chest-xray': 'Kermany, Zhang, Goldbaum (2018), Mendeley Data v2, doi:10.17632/rscbjbr9sj.2, CC BY 4.0',
} as const;

const registry = await ModelRegistry.load({ dir: path.resolve(values['models-dir']) });
await mkdir(OUT, { recursive: true });
const lines: string[] = [];
for (const { id } of registry.list()) {
  const model = registry.get(id);
  for (const label of model.manifest.labels) {
    const dir = path.join(path.resolve(values.datasets), id, 'test', label);
    let picked: string | null = null;
    for (const name of (await readdir(dir)).sort()) {
      const bytes = await readFile(path.join(dir, name));
      const { result } = await analyzeImage(model, bytes, { scanType: model.manifest.task, heatmap: false });
      if (result.refused) continue;
      const ok =
        result.scanType === 'brain-mri'
          ? (result.tumorType ?? 'notumor') === label && result.confidence >= 0.9
          : (result.pneumoniaType ?? 'normal') === label && result.probabilities[label] >= 0.8;
      if (!ok) continue;
      const { data, info } = await sharp(bytes).removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
      await writeFile(
        path.join(OUT, `${id}--${label}.png`),
        await sharp(data, { raw: { width: info.width, height: info.height, channels: 3 } }).png().toBuffer(),
      );
      picked = name;
      break;
    }
    if (!picked) throw new Error(`no confident correct ${id}/${label} test image`);
    lines.push(`| \`${id}--${label}.png\` | ${id} test/${label}/${picked} | ${ATTRIBUTION[id as keyof typeof ATTRIBUTION]} |`);
    console.log(`${id}/${label}: ${picked}`);
  }
}
await registry.close();
await writeFile(
  path.join(OUT, 'README.md'),
  [
    '# ML test fixtures',
    '',
    'One test-split image per class, converted losslessly from the dataset JPEG to PNG (decoded',
    'pixels unchanged) by `scripts/make-ml-fixtures.ts`. Used by `src/ml/*.test.ts` and the',
    'PyTorch parity check (`ml/parity.py`). Not for training or tuning.',
    '',
    '| file | source image | attribution and licence |',
    '|---|---|---|',
    ...lines,
    '',
    'Brain images: Nickparvar, M. Brain Tumor MRI Dataset (Kaggle), CC0 1.0.',
    'Chest images: Kermany, Zhang, Goldbaum (2018), "Labeled Optical Coherence Tomography (OCT) and',
    'Chest X-Ray Images for Classification", Mendeley Data v2, doi:10.17632/rscbjbr9sj.2, CC BY 4.0.',
    '',
  ].join('\n'),
);
