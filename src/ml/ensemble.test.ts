/**
 * ml/ensemble.py (scripts/ensemble-model.ts): two exported chest graphs as one served graph. The
 * served chest model (int8) and the float candidate in ml/candidates are run alone and as an
 * ensemble on a fixture image: the ensemble's logits and activation maps must be the members'
 * means, its features their concatenation, and its distance computed on that concatenation (with
 * the placeholder statistics ml/ensemble.py writes before refit-ood: zero means, identity precision,
 * so the distance is the features' Euclidean norm). ml/parity.py's ensemble branch (the PyTorch side of
 * the parity test for a served ensemble) must give the same outputs. Skips, saying why, without
 * /usr/bin/python3's onnx (and torch for the parity part).
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import * as ort from 'onnxruntime-node';

import { preprocessImage } from './preprocess.js';
import { fixturePath, loadTestModels, TEST_MODELS_DIR } from './testing.js';

const ROOT = path.resolve(fileURLToPath(new URL('../..', import.meta.url)));
const CANDIDATE = path.join(ROOT, 'ml', 'candidates', 'chest-xray-2.2.0.onnx');

const probe = spawnSync('/usr/bin/python3', ['-c', 'import onnx, numpy'], { encoding: 'utf8' });
const noPython = probe.error || probe.status !== 0 ? '/usr/bin/python3 lacks onnx or numpy' : false;
const torchProbe = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8' });
const noTorch = Boolean(torchProbe.error) || torchProbe.status !== 0;
if (process.env.CI && noPython) throw new Error(`CI requires ml/ensemble.py's Python: ${noPython}`);

const { registry, skip } = await loadTestModels();
after(() => registry.close());

describe('ml/ensemble.py', { skip: skip['chest-xray'] || noPython }, () => {
  it('averages the members logits and activation maps, concatenates their features and measures the distance on them', async () => {
    const model = registry.get('chest-xray');
    const served = path.join(TEST_MODELS_DIR, model.manifest.file);
    const dir = await mkdtemp(path.join(tmpdir(), 'imagemedix-ensemble-'));
    after(() => rm(dir, { recursive: true, force: true }));
    const out = path.join(dir, 'ensemble.onnx');
    await promisify(execFile)('/usr/bin/python3', ['ml/ensemble.py', '--member', served, '--member', CANDIDATE, '--out', out], { cwd: ROOT });

    const { tensor } = await preprocessImage(await readFile(fixturePath('chest-xray', 'bacterial')), model.manifest.preprocessing);
    const feeds = { input: new ort.Tensor('float32', tensor, [1, 1, 224, 224]) };
    const run = async (file: string) => {
      const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 1 });
      const result = await session.run(feeds);
      await session.release();
      const data = (name: string) => Array.from(result[name]!.data as Float32Array);
      return { logits: data('logits'), features: data('features'), cam: data('cam'), camDims: result.cam!.dims, ood: data('ood_distance')[0]! };
    };
    const [a, b, ensemble] = [await run(served), await run(CANDIDATE), await run(out)];

    const close = (x: number[], y: number[], what: string) => {
      assert.equal(x.length, y.length, `${what}: length`);
      for (const [i, v] of x.entries()) assert.ok(Math.abs(v - y[i]!) <= 1e-4 * Math.max(1, Math.abs(y[i]!)), `${what}[${i}]: ${v} vs ${y[i]}`);
    };
    assert.notDeepEqual(a.logits, b.logits, 'the members answer differently, so a mean is a real check');
    close(ensemble.logits, a.logits.map((v, i) => (v + b.logits[i]!) / 2), 'logits');
    close(ensemble.cam, a.cam.map((v, i) => (v + b.cam[i]!) / 2), 'cam');
    assert.deepEqual(ensemble.camDims, a.camDims);
    close(ensemble.features, [...a.features, ...b.features], 'features');
    const norm = Math.sqrt(ensemble.features.reduce((s, v) => s + v * v, 0));
    close([ensemble.ood], [norm], 'ood_distance with the placeholder statistics');

    // ml/parity.py rebuilds each member from its m<k>_ nodes, with the mirror and input normalisation
    // the manifest's ensemble record gives it. The int8 member allows 1e-2, as src/ml/parity.test.ts
    // does on CPUs whose int8 kernels saturate.
    if (noTorch) return;
    const member = { horizontalFlip: true, inputNorm: 'none' };
    await writeFile(path.join(dir, 'ensemble.json'), JSON.stringify({ testTimeAugmentation: { horizontalFlip: true }, ensemble: { members: [member, member] } }));
    const { stdout } = await promisify(execFile)(
      '/usr/bin/python3',
      ['ml/parity.py', '--model', out, '--image', fixturePath('chest-xray', 'bacterial')],
      { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 },
    );
    const py = (JSON.parse(stdout) as { images: { logits: number[]; features: number[]; oodDistance: number }[] }).images[0]!;
    const within = (x: number[], y: number[], what: string) => {
      assert.equal(x.length, y.length, `${what}: length`);
      for (const [i, v] of x.entries()) assert.ok(Math.abs(v - y[i]!) <= 1e-2 * Math.max(1, Math.abs(y[i]!)), `${what}[${i}]: ${v} vs ${y[i]}`);
    };
    within(py.logits, ensemble.logits, 'parity.py logits');
    within(py.features, ensemble.features, 'parity.py features');
    within([py.oodDistance], [ensemble.ood], 'parity.py ood_distance');
  });
});
