/**
 * Static int8 quantisation of an installed model (ml/quantize.py, QDQ form), with activation
 * ranges calibrated on train/ images only: never test/ or external/, and not the validation
 * images ml/train.py held out (ml/validation_split.py), which stay for checking.
 *
 *   npx tsx scripts/quantize-model.ts --model brain-mri --out <dir> [--data ../shared/datasets/brain-mri]
 *                                     [--models-dir models] [--per-class 64] [--version 2.1.0]
 *                                     [--method minmax|percentile] [--percentile 99.9] [--weight-bits 8|7]
 *
 * Then refits the out-of-distribution class statistics and threshold on the quantised graph's own
 * features (as ml/train.py does on the float graph's). Writes <dir>/<id>.onnx, <dir>/<id>.json (the manifest with the new sha256, version and a
 * `quantization` record), and in <dir>/quantization/ the probe graph and <id>.ranges.json (per-image
 * minima and maxima of every convolution and ReLU output). Evaluate the result through the served pipeline
 * (MODELS_DIR=<dir> EVAL_BASELINE=none scripts/eval-all.sh) before installing it.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import * as ort from 'onnxruntime-node';

import { preprocessImage } from '../src/ml/preprocess.js';
import { DEFAULT_MODELS_DIR, parseManifest } from '../src/ml/registry.js';
import { refitOod, trainingImages, validationImages } from './lib/refit-ood.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    data: { type: 'string' },
    'models-dir': { type: 'string', default: DEFAULT_MODELS_DIR },
    out: { type: 'string' },
    'per-class': { type: 'string', default: '64' },
    version: { type: 'string' },
    method: { type: 'string', default: 'minmax' },
    percentile: { type: 'string', default: '99.9' },
    'weight-bits': { type: 'string', default: '8' },
    'val-fraction': { type: 'string', default: '0.12' },
  },
});
const id = values.model;
const outDir = values.out;
const perClass = Number(values['per-class']);
if (!id || !outDir || !(Number.isInteger(perClass) && perClass > 0)) {
  console.error('usage: npx tsx scripts/quantize-model.ts --model <id> --out <dir> [--data <dir>] [--per-class 64] [--version x.y.z]');
  process.exit(2);
}
const modelsDir = path.resolve(values['models-dir']);
const dataDir = path.resolve(values.data ?? path.join('..', 'shared', 'datasets', id));
const manifestPath = path.join(modelsDir, `${id}.json`);
const rawManifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Record<string, unknown>;
const manifest = parseManifest(structuredClone(rawManifest), manifestPath);
const floatPath = path.join(modelsDir, manifest.file);
mkdirSync(outDir, { recursive: true });

// Calibration images: train/ minus the validation images, evenly spread over each class's sorted files.
const recipe = (manifest.training as { recipe?: { seed?: number } } | undefined)?.recipe;
const seed = recipe?.seed ?? 20261125;
const validation = validationImages(manifest.task, dataDir, seed, values['val-fraction']);
const training = trainingImages(manifest.labels, dataDir, validation);
const images: string[] = [];
for (const label of manifest.labels.keys()) {
  const files = training.filter((t) => t.label === label).map((t) => t.file);
  const step = files.length / perClass;
  for (let i = 0; i < Math.min(perClass, files.length); i++) images.push(files[Math.floor(i * step)]!);
}
const expectedTrain = (manifest.training as { data?: { trainCount?: number } } | undefined)?.data?.trainCount;
if (expectedTrain !== undefined && expectedTrain !== training.length) {
  console.error(`train/ minus validation has ${training.length} images, the manifest says ${expectedTrain}`);
  process.exit(2);
}

// The probe graph and the ranges go to a subfolder: the registry reads every *.json of <dir>.
const workDir = path.join(outDir, 'quantization');
mkdirSync(workDir, { recursive: true });
const probePath = path.join(workDir, `${id}.probe.onnx`);
execFileSync('/usr/bin/python3', ['ml/quantize.py', 'probe', '--model', floatPath, '--out', probePath], { stdio: 'inherit' });
const session = await ort.InferenceSession.create(probePath, { intraOpNumThreads: 1, graphOptimizationLevel: 'basic' });
const ranges: Record<string, { min: number[]; max: number[] }> = {};
const { input } = manifest;
for (const [i, file] of images.entries()) {
  const { tensor } = await preprocessImage(readFileSync(file), manifest.preprocessing);
  const out = await session.run({ [input.name]: new ort.Tensor('float32', tensor, [1, 1, input.height, input.width]) });
  for (const name of session.outputNames) {
    const data = out[name]!.data as Float32Array;
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of data) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    (ranges[name] ??= { min: [], max: [] }).min.push(lo);
    ranges[name].max.push(hi);
  }
  if ((i + 1) % 64 === 0) process.stderr.write(`  calibration images: ${i + 1}/${images.length}\n`);
}
await session.release();
const rangesPath = path.join(workDir, `${id}.ranges.json`);
writeFileSync(rangesPath, JSON.stringify({ model: manifest.sha256, images: images.length, ranges }) + '\n');

const quantizedPath = path.join(outDir, manifest.file);
const quantizeArgs = ['ml/quantize.py', 'quantize', '--model', floatPath, '--ranges', rangesPath, '--out', quantizedPath, '--method', values.method];
if (values.method === 'percentile') quantizeArgs.push('--method-percentile', values.percentile);
quantizeArgs.push('--weight-bits', values['weight-bits']);
execFileSync('/usr/bin/python3', quantizeArgs, { stdio: 'inherit' });

// Out-of-distribution statistics refitted on the quantised graph's own features.
const refit = await refitOod({ id, modelPath: quantizedPath, manifest, rawManifest, training, validation, workDir });

const sha256 = createHash('sha256').update(readFileSync(quantizedPath)).digest('hex');
const written = {
  ...rawManifest,
  version: values.version ?? manifest.version,
  sha256,
  refusal: {
    ...(rawManifest.refusal as object),
    oodThreshold: refit.oodThreshold,
    validationDistances: refit.validationDistances,
    statistics: `class means and tied covariance refitted on the int8 graph's features of the ${training.length} train/ images (validation excluded), threshold by the same rule on its ${validation.length} validation distances (scripts/quantize-model.ts)`,
  },
  quantization: {
    format: 'QDQ (QuantizeLinear/DequantizeLinear), fused by onnxruntime into QLinearConv/QLinearAdd on CPU',
    weights: `int8${values['weight-bits'] === '7' ? ' holding 7 bits (-63..63)' : ''}, symmetric, per output channel; biases int32`,
    activations: `uint8, ${values.method === 'percentile' ? `${values.percentile}th percentile of per-image extremes` : 'minimum and maximum'} over ${images.length} train/ images (validation images excluded; ${perClass} per class)`,
    float: 'the first convolution (one input channel) and everything after the last stage\'s convolutions (residual sum, pooling, head, maps, distance)',
    from: { version: manifest.version, sha256: manifest.sha256 },
    command: `npx tsx scripts/quantize-model.ts ${process.argv.slice(2).join(' ')}`,
  },
};
writeFileSync(path.join(outDir, `${id}.json`), JSON.stringify(written, null, 2) + '\n');
console.log(JSON.stringify({ model: quantizedPath, sha256, calibrationImages: images.length, refusal: refit }));
