import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { PermanentAnalysisError } from './errors.js';
import { ModelLoadError, ModelRegistry, parseManifest } from './registry.js';
import { TEST_MODELS_DIR } from './testing.js';

const spec = JSON.parse(await readFile(new URL('../../ml/preprocessing.json', import.meta.url), 'utf8')) as object;
const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

async function modelDir(files: Record<string, string | Buffer>): Promise<string> {
  const dir = path.join(os.tmpdir(), `imagemedix-registry-${randomUUID()}`);
  await mkdir(dir, { recursive: true });
  dirs.push(dir);
  for (const [name, content] of Object.entries(files)) await writeFile(path.join(dir, name), content);
  return dir;
}

function manifest(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: 'brain-mri',
    name: 'Brain MRI tumour classifier',
    version: '1.0.0',
    task: 'brain-mri',
    file: 'brain-mri.onnx',
    sha256: 'a'.repeat(64),
    labels: ['glioma', 'meningioma', 'notumor', 'pituitary'],
    input: { name: 'input', width: 224, height: 224, channels: 1 },
    preprocessing: spec,
    calibration: { method: 'temperature scaling', temperature: 1.2 },
    refusal: { method: 'mahalanobis', oodThreshold: 20 },
    decision: {},
    ...overrides,
  };
}

describe('ModelRegistry.load', () => {
  it('is empty when the folder does not exist, and get() says the model is not installed', async () => {
    const registry = await ModelRegistry.load({ dir: path.join(os.tmpdir(), `missing-${randomUUID()}`) });
    assert.deepEqual(registry.list(), []);
    assert.equal(registry.has('brain-mri'), false);
    assert.throws(
      () => registry.get('brain-mri'),
      (e: unknown) => e instanceof PermanentAnalysisError && e.reason === 'model_unavailable' && /brain-mri/.test(e.message),
    );
  });

  it('refuses a model file whose sha256 differs from the manifest', async () => {
    const dir = await modelDir({
      'brain-mri.json': JSON.stringify(manifest()),
      'brain-mri.onnx': Buffer.from('not the trained model'),
    });
    await assert.rejects(ModelRegistry.load({ dir }), (e: unknown) => e instanceof ModelLoadError && /sha256/.test(e.message));
  });

  it('names the manifest when its model file is missing', async () => {
    const dir = await modelDir({ 'brain-mri.json': JSON.stringify(manifest()) });
    await assert.rejects(ModelRegistry.load({ dir }), (e: unknown) => e instanceof ModelLoadError && /brain-mri\.onnx/.test(e.message));
  });

  it('loads the installed models once, with their test metrics', async (t) => {
    const registry = await ModelRegistry.load({ dir: TEST_MODELS_DIR, intraOpNumThreads: 1 });
    const models = registry.list();
    if (models.length === 0) {
      t.skip('no models installed in models/');
      return;
    }
    for (const m of models) {
      assert.ok(m.labels.length >= 3);
      assert.ok(m.metrics && m.metrics.accuracy > 0 && m.metrics.accuracy <= 1);
      assert.equal(registry.get(m.id).session, registry.get(m.id).session, 'one session per model, reused');
    }
    await registry.close();
  });
});

describe('parseManifest', () => {
  it('accepts what ml/train.py writes', () => {
    assert.equal(parseManifest(manifest()).task, 'brain-mri');
  });

  it('rejects labels that do not match the task', () => {
    assert.throws(() => parseManifest(manifest({ labels: ['normal', 'tumour'] })), /labels must be glioma/);
  });

  it('requires a decision threshold for the chest model', () => {
    const chest = manifest({
      id: 'chest-xray',
      task: 'chest-xray',
      file: 'chest-xray.onnx',
      labels: ['normal', 'bacterial', 'viral'],
    });
    assert.throws(() => parseManifest(chest), /positiveThreshold/);
    const withDecision = { ...chest, decision: { positiveLabels: ['bacterial', 'viral'], positiveThreshold: 0.4 } };
    assert.equal(parseManifest(withDecision).decision.positiveThreshold, 0.4);
  });

  it('rejects a sha256 that is not a digest', () => {
    const digest = createHash('sha256').update('x').digest('hex');
    assert.equal(parseManifest(manifest({ sha256: digest })).sha256, digest);
    assert.throws(() => parseManifest(manifest({ sha256: 'abc' })), /sha256/);
  });
});
