/**
 * Builds a reject/ folder for `npm run eval`: images a model must refuse.
 *
 *   tsx scripts/make-reject-set.ts --out <dir>/reject [--other <dataset>/test] [--other-count 100] [--seed 1]
 *
 * Synthetic, deterministic for a seed: colour photographs (30), the same kind in grayscale
 * (10), documents (20), blank or near-constant frames (10), noise (20); plus symlinks to
 * --other-count images of the *other* model's test set (spread evenly over its classes).
 * The file name up to the first '-' is the category the eval reports on.
 */
import { mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { blankImage, noiseImage, syntheticDocument, syntheticPhoto } from '../src/ml/synthetic.js';

const { values } = parseArgs({
  options: {
    out: { type: 'string' },
    other: { type: 'string' },
    'other-count': { type: 'string', default: '100' },
    seed: { type: 'string', default: '1' },
  },
});
if (!values.out) {
  console.error('usage: tsx scripts/make-reject-set.ts --out <dir> [--other <test dir>] [--other-count 100] [--seed 1]');
  process.exit(2);
}
const out = path.resolve(values.out);
const seed = Number(values.seed) * 10_000;
await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });

const pad = (i: number) => String(i).padStart(3, '0');
const made: Record<string, number> = {};
async function make(category: string, count: number, render: (seed: number) => Promise<Buffer>): Promise<void> {
  for (let i = 0; i < count; i++) {
    await writeFile(path.join(out, `${category}-${pad(i)}.png`), await render(seed + Object.keys(made).length * 1000 + i));
  }
  made[category] = count;
}

await make('photo', 30, (s) => syntheticPhoto(s));
await make('photogray', 10, (s) => syntheticPhoto(s, { gray: true }));
await make('document', 20, syntheticDocument);
await make('blank', 10, blankImage);
await make('noise', 20, noiseImage);

if (values.other) {
  const other = path.resolve(values.other);
  const want = Number(values['other-count']);
  const classes = (await readdir(other, { withFileTypes: true }))
    .filter((d) => d.isDirectory())
    .map((d) => d.name)
    .sort();
  const prefix = path.basename(path.dirname(other));
  let linked = 0;
  for (const [ci, cls] of classes.entries()) {
    const files = (await readdir(path.join(other, cls))).filter((f) => /\.(png|jpe?g)$/i.test(f)).sort();
    // An even share per class, the remainder to the first classes; files spread over the list.
    const share = Math.floor(want / classes.length) + (ci < want % classes.length ? 1 : 0);
    const step = files.length / Math.max(1, share);
    for (let i = 0; i < share && i < files.length; i++) {
      const file = files[Math.floor(i * step)]!;
      await symlink(path.join(other, cls, file), path.join(out, `crossmodality-${prefix}-${cls}-${file}`));
      linked++;
    }
  }
  made.crossmodality = linked;
}
console.log(`reject set in ${out}: ${Object.entries(made).map(([k, v]) => `${k} ${v}`).join(', ')}`);
