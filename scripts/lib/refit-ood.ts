/**
 * What scripts/quantize-model.ts and scripts/ensemble-model.ts share: the validation split
 * ml/train.py held out (ml/validation_split.py), train/ minus it, and the out-of-distribution
 * statistics refitted on a new graph's own features, as ml/train.py fits them on the float
 * graph's: class means and tied covariance on train/ minus validation, the threshold by the
 * manifest's rule on the validation distances (ml/quantize.py refit-ood).
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import * as ort from 'onnxruntime-node';

import { preprocessImage } from '../../src/ml/preprocess.js';
import type { ModelManifest } from '../../src/ml/registry.js';

/** The validation images of the split of `seed` (absolute paths, in the split's order). */
export function validationImages(task: string, dataDir: string, seed: number, valFraction: string): string[] {
  return execFileSync('/usr/bin/python3', ['ml/validation_split.py', '--task', task, '--data', dataDir, '--seed', String(seed), '--val-fraction', valFraction], {
    encoding: 'utf8',
  })
    .trim()
    .split('\n')
    .map((l) => path.resolve((JSON.parse(l) as { path: string }).path));
}

/** train/ minus `validation`, class by class in label order, each class's files sorted. */
export function trainingImages(labels: readonly string[], dataDir: string, validation: readonly string[]): { file: string; label: number }[] {
  const held = new Set(validation);
  return labels.flatMap((name, label) => {
    const dir = path.join(dataDir, 'train', name);
    return readdirSync(dir)
      .sort()
      .map((f) => path.join(dir, f))
      .filter((file) => !held.has(path.resolve(file)))
      .map((file) => ({ file, label }));
  });
}

/**
 * Refits the refusal statistics of the graph at `modelPath` on its own `features` output,
 * with the rule of the manifest it was made from (its `refusal.rule` text, or the quantile of
 * validation); the features go to `<workDir>/<id>.features.json`.
 */
export async function refitOod(opts: {
  id: string;
  modelPath: string;
  manifest: ModelManifest;
  rawManifest: Record<string, unknown>;
  training: { file: string; label: number }[];
  validation: string[];
  workDir: string;
}): Promise<{ oodThreshold: number; validationDistances: Record<string, number> }> {
  const { manifest } = opts;
  const { input } = manifest;
  const session = await ort.InferenceSession.create(opts.modelPath, { intraOpNumThreads: 1, graphOptimizationLevel: 'all' });
  const features = async (files: string[], what: string): Promise<number[][]> => {
    const rows: number[][] = [];
    for (const [i, file] of files.entries()) {
      const { tensor } = await preprocessImage(readFileSync(file), manifest.preprocessing);
      const out = await session.run({ [input.name]: new ort.Tensor('float32', tensor, [1, 1, input.height, input.width]) });
      rows.push(Array.from(out.features!.data as Float32Array));
      if ((i + 1) % 500 === 0) process.stderr.write(`  ${what} features: ${i + 1}/${files.length}\n`);
    }
    return rows;
  };
  const featuresPath = path.join(opts.workDir, `${opts.id}.features.json`);
  try {
    writeFileSync(
      featuresPath,
      JSON.stringify({
        labels: manifest.labels,
        train: { features: await features(opts.training.map((t) => t.file), 'train'), labels: opts.training.map((t) => t.label) },
        validation: { features: await features(opts.validation, 'validation') },
      }),
    );
  } finally {
    await session.release();
  }
  const rule = (opts.rawManifest.refusal as { rule?: string } | undefined)?.rule ?? '';
  const times = /^([\d.]+) x the largest validation distance/.exec(rule);
  const ruleArg = times ? `max-times:${times[1]}` : `quantile:${manifest.refusal.quantileOfValidation ?? 0.995}`;
  return JSON.parse(
    execFileSync('/usr/bin/python3', ['ml/quantize.py', 'refit-ood', '--model', opts.modelPath, '--features', featuresPath, '--rule', ruleArg], {
      encoding: 'utf8',
    }),
  ) as { oodThreshold: number; validationDistances: Record<string, number> };
}
