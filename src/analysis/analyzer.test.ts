/**
 * The worker hands the analyzer the pixels of a render it has just made instead of the PNG it
 * stored: with the real models, the outcome (finding, refusal, hot region, heatmap) is the
 * same as the analysis of that display image's PNG gave before.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import sharp from 'sharp';
import { createOnnxAnalyzer } from './analyzer.js';
import { decodeDisplayPixels, decodeUpload } from '../imaging/index.js';
import { dicomFixture, imageFixture } from '../imaging/testing/paths.js';
import { REPO_ROOT } from '../platform/config.js';
import { PermanentJobError } from '../platform/queue/index.js';
import type { ScanType } from '../scan-types/index.js';

describe('analysis from decoded pixels', () => {
  const analyzer = createOnnxAnalyzer({ modelsDir: path.join(REPO_ROOT, 'models'), threads: 1 });
  after(() => analyzer.close());

  const cases: [string, Buffer, ScanType | null][] = [
    ['DICOM MR, declared brain MRI', dicomFixture('MR1_UNC.dcm'), 'brain-mri'],
    ['DICOM MR, type from the header', dicomFixture('MR1_UNC.dcm'), null],
    ['DICOM RGB, type from the image', dicomFixture('SC_rgb_small_odd.dcm'), null],
    ['JPEG brain MRI', imageFixture('brain-glioma-1.jpg'), 'brain-mri'],
    ['grayscale PNG chest X-ray', imageFixture('chest-normal-1.png'), 'chest-xray'],
  ];
  for (const [name, file, scanType] of cases) {
    it(`${name}: the same outcome as from the display PNG`, { timeout: 60_000 }, async () => {
      const decoded = await decodeUpload(file, { withPixels: true });
      const { pixels, dicom } = decoded;
      assert.ok(pixels);
      // The display PNG as it was encoded before (zlib level 6): the analysis it got.
      const formerPng = await sharp(pixels.data, { raw: pixels })
        .toColourspace(pixels.channels === 1 ? 'b-w' : 'srgb')
        .png()
        .toBuffer();
      const context = { dicom: dicom ? { modality: dicom.modality, bodyPartExamined: dicom.bodyPartExamined } : null };
      const noStage = async () => {};
      const fromPng = await analyzer.analyze(scanType, { png: formerPng }, noStage, context);
      const fromPixels = await analyzer.analyze(scanType, { pixels }, noStage, context);
      assert.deepEqual(fromPixels, fromPng);
      // The caller's pixels are copied to the thread, not taken from it.
      assert.equal(pixels.data.length, pixels.width * pixels.height * pixels.channels);
    });
  }
});

describe('analysis of a JPEG or PNG original, decoded in the analyzer thread', () => {
  const analyzer = createOnnxAnalyzer({ modelsDir: path.join(REPO_ROOT, 'models'), threads: 1 });
  after(() => analyzer.close());
  const noStage = async () => {};

  it('gives the outcome of the analysis of its decoded pixels', { timeout: 60_000 }, async () => {
    const rotated = await sharp(imageFixture('chest-normal-1.jpeg')).jpeg().withMetadata({ orientation: 3 }).toBuffer();
    const cases: [Buffer, ScanType | null][] = [
      [imageFixture('brain-glioma-1.jpg'), 'brain-mri'],
      [imageFixture('chest-bacterial-1.jpeg'), null],
      [rotated, 'chest-xray'],
      [imageFixture('chest-normal-1.png'), 'chest-xray'],
    ];
    for (const [file, scanType] of cases) {
      const pixels = await decodeDisplayPixels(file);
      const fromPixels = await analyzer.analyze(scanType, { pixels }, noStage);
      const fromOriginal = await analyzer.analyze(scanType, { original: file }, noStage);
      assert.deepEqual(fromOriginal, fromPixels);
    }
  });

  it('fails for good, saying why, when the original cannot be decoded', { timeout: 60_000 }, async () => {
    const truncated = readFileSync(path.join(REPO_ROOT, 'test/fixtures/hostile/truncated.jpg'));
    const why = await decodeDisplayPixels(truncated).then(
      () => assert.fail('decoded'),
      (err: Error) => err.message,
    );
    await assert.rejects(analyzer.analyze('brain-mri', { original: truncated }, noStage), (err: Error) => {
      assert.ok(err instanceof PermanentJobError);
      assert.equal(err.message, `The image could not be decoded: ${why}`);
      return true;
    });
  });
});

describe('analyzer warm-up', () => {
  it('loads the models into every thread before the first analysis', { timeout: 60_000 }, async () => {
    const modelsDir = mkdtempSync(path.join(tmpdir(), 'imagemedix-models-'));
    cpSync(path.join(REPO_ROOT, 'models'), modelsDir, { recursive: true });
    const analyzer = createOnnxAnalyzer({ modelsDir, threads: 2 });
    try {
      await analyzer.warmUp();
      // Gone from disk: only a thread that loaded them in the warm-up can still analyse.
      rmSync(modelsDir, { recursive: true, force: true });
      const png = imageFixture('brain-glioma-1.jpg');
      const outputs = await Promise.all([0, 1, 2, 3].map(() => analyzer.analyze('brain-mri', { png }, async () => {})));
      for (const output of outputs) assert.equal(output.model?.id, 'brain-mri');
    } finally {
      rmSync(modelsDir, { recursive: true, force: true });
      await analyzer.close();
    }
  });
});
