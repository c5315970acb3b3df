/**
 * An ensemble of installed-format models (each a folder with <id>.onnx and <id>.json, float or
 * int8) as one served graph (ml/ensemble.py): the members' logits and class activation maps
 * averaged, their penultimate features concatenated, and the out-of-distribution class statistics
 * and threshold refitted on the ensemble's own features by the first member's rule
 * (scripts/lib/refit-ood.ts, as scripts/quantize-model.ts refits them on an int8 graph's).
 *
 *   npx tsx scripts/ensemble-model.ts --model chest-xray --member <dir> --member <dir> --out <dir>
 *                                     [--split-from 1] [--version 2.5.0] [--data ../shared/datasets/<id>]
 *
 * The validation images (ml/validation_split.py) are those of member --split-from (its manifest's
 * seed, count checked): the refusal statistics are fitted on train/ minus them, the threshold set
 * by the first member's rule on their distances, and scripts/calibrate-model.ts later uses the same
 * split because the written manifest carries that seed. Choose the member that never trained on
 * that split where there is one. The manifest is the first member's with the new file, refusal,
 * training data counts and seed, and an `ensemble` record; calibrate it next
 * (scripts/calibrate-model.ts --write) and evaluate it (MODELS_DIR=<dir> EVAL_BASELINE=none
 * scripts/eval-all.sh) before installing it.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { parseManifest, type EnsembleRecord } from '../src/ml/registry.js';
import { refitOod, trainingImages, validationImages } from './lib/refit-ood.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    member: { type: 'string', multiple: true, default: [] },
    out: { type: 'string' },
    data: { type: 'string' },
    'split-from': { type: 'string', default: '0' },
    version: { type: 'string' },
    'val-fraction': { type: 'string', default: '0.12' },
  },
});
const id = values.model;
const outDir = values.out;
const splitFrom = Number(values['split-from']);
if (!id || !outDir || values.member.length < 2 || !(Number.isInteger(splitFrom) && splitFrom >= 0 && splitFrom < values.member.length)) {
  console.error('usage: npx tsx scripts/ensemble-model.ts --model <id> --member <dir> --member <dir> --out <dir> [--split-from k] [--version x.y.z]');
  process.exit(2);
}
type Raw = Record<string, unknown> & {
  training?: { data?: Record<string, unknown> & { trainCount?: number; validationCount?: number }; recipe?: Record<string, unknown> };
};
const members = values.member.map((dir) => {
  const manifestPath = path.join(path.resolve(dir), `${id}.json`);
  const raw = JSON.parse(readFileSync(manifestPath, 'utf8')) as Raw;
  const manifest = parseManifest(structuredClone(raw), manifestPath);
  return { raw, manifest, onnx: path.join(path.dirname(manifestPath), manifest.file) };
});
const base = members[0]!;
for (const m of members.slice(1)) {
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (!same(m.manifest.labels, base.manifest.labels) || !same(m.manifest.input, base.manifest.input) || !same(m.manifest.preprocessing, base.manifest.preprocessing)) {
    console.error(`${m.onnx}: labels, input or preprocessing differ from ${base.onnx}; members must share them`);
    process.exit(2);
  }
}
const dataDir = path.resolve(values.data ?? path.join('..', 'shared', 'datasets', id));
mkdirSync(outDir, { recursive: true });
const ensemblePath = path.join(outDir, base.manifest.file);
execFileSync('/usr/bin/python3', ['ml/ensemble.py', ...members.flatMap((m) => ['--member', m.onnx]), '--out', ensemblePath], { stdio: 'inherit' });

// The validation split of member --split-from, and train/ minus it.
const splitMember = members[splitFrom]!;
const seed = (splitMember.raw.training?.recipe?.seed as number | undefined) ?? 20261125;
const validation = validationImages(base.manifest.task, dataDir, seed, values['val-fraction']);
const training = trainingImages(base.manifest.labels, dataDir, validation);
const splitData = splitMember.raw.training?.data ?? {};
if (splitData.trainCount !== undefined && splitData.trainCount !== training.length) {
  console.error(`train/ minus validation has ${training.length} images, member ${splitFrom}'s manifest says ${String(splitData.trainCount)}`);
  process.exit(2);
}
if (splitData.validationCount !== undefined && splitData.validationCount !== validation.length) {
  console.error(`validation has ${validation.length} images, member ${splitFrom}'s manifest says ${String(splitData.validationCount)}`);
  process.exit(2);
}

const workDir = path.join(outDir, 'ensemble');
mkdirSync(workDir, { recursive: true });
const refit = await refitOod({ id, modelPath: ensemblePath, manifest: base.manifest, rawManifest: base.raw, training, validation, workDir });

const sha256 = createHash('sha256').update(readFileSync(ensemblePath)).digest('hex');
const describe = (m: (typeof members)[number]): EnsembleRecord['members'][number] => ({
  version: m.manifest.version,
  sha256: m.manifest.sha256,
  seed: (m.raw.training?.recipe?.seed as number | undefined) ?? null,
  trainCount: m.raw.training?.data?.trainCount ?? null,
  validationCount: m.raw.training?.data?.validationCount ?? null,
  quantization: (m.raw.quantization as { weights?: string } | undefined)?.weights ?? 'float',
  // ml/parity.py rebuilds each member with its own test-time mirror and input normalisation.
  horizontalFlip: (m.raw.testTimeAugmentation as { horizontalFlip?: boolean } | undefined)?.horizontalFlip ?? false,
  inputNorm: (m.raw.training?.recipe?.inputNorm as string | undefined) ?? 'none',
});
const written = {
  ...base.raw,
  version: values.version ?? base.manifest.version,
  sha256,
  outputs: {
    ...(base.raw.outputs as object),
    logits: `mean of the ${members.length} members' raw class scores, divide by temperature before softmax`,
    features: `the ${members.length} members' global-average-pooled penultimate features, concatenated`,
    cam: `mean of the members' class activation maps (the exact map of the mean logits)`,
  },
  refusal: {
    ...(base.raw.refusal as object),
    oodThreshold: refit.oodThreshold,
    validationDistances: refit.validationDistances,
    statistics: `class means and tied covariance fitted on the ensemble's concatenated features of the ${training.length} train/ images (validation of seed ${seed} excluded), threshold by the same rule on its ${validation.length} validation distances (scripts/ensemble-model.ts)`,
  },
  training: {
    ...base.raw.training,
    data: { ...base.raw.training?.data, ...splitData },
    recipe: { ...base.raw.training?.recipe, seed },
  },
  ensemble: {
    members: members.map(describe),
    combination: 'logits and class activation maps averaged with equal weights inside the graph, features concatenated',
    validationSplitFrom: `member ${splitFrom} (${splitMember.manifest.version}), seed ${seed}`,
    command: `npx tsx scripts/ensemble-model.ts ${process.argv.slice(2).join(' ')}`,
  } satisfies EnsembleRecord,
};
writeFileSync(path.join(outDir, `${id}.json`), JSON.stringify(written, null, 2) + '\n');
console.log(JSON.stringify({ model: ensemblePath, sha256, train: training.length, validation: validation.length, refusal: refit }));
