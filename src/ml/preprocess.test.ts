import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import sharp from 'sharp';

import { PermanentAnalysisError } from './errors.js';
import { parsePreprocessingSpec, preprocessImage, tensorFromRgb } from './preprocess.js';

const spec = parsePreprocessingSpec(JSON.parse(readFileSync(new URL('../../ml/preprocessing.json', import.meta.url), 'utf8')));

/** A 224 x 224 gray gradient with a bright square, as 3-channel raw pixels. */
function grayScene(): Buffer {
  const data = Buffer.alloc(224 * 224 * 3);
  for (let y = 0; y < 224; y++) {
    for (let x = 0; x < 224; x++) {
      const v = x > 80 && x < 140 && y > 60 && y < 120 ? 240 : Math.round((x + y) / 2);
      data.fill(v, (y * 224 + x) * 3, (y * 224 + x) * 3 + 3);
    }
  }
  return data;
}

const png = (data: Buffer, width: number, height: number, channels: 1 | 2 | 3 | 4) =>
  sharp(data, { raw: { width, height, channels } }).png().toBuffer();

describe('tensorFromRgb', () => {
  it('normalises the mean of R, G, B with the spec mean and std', () => {
    const tiny = { ...spec, width: 3, height: 1 };
    const t = tensorFromRgb(Uint8Array.from([0, 0, 0, 255, 255, 255, 30, 60, 90]), tiny);
    assert.equal(t[0], -2);
    assert.equal(t[1], 2);
    assert.ok(Math.abs(t[2]! - (60 / 255 - 0.5) / 0.25) < 1e-6);
  });
});

describe('preprocessImage', () => {
  it('gives the same tensor for gray stored as RGB, as one channel and with alpha', async () => {
    const rgb = grayScene();
    const gray = Buffer.alloc(224 * 224);
    const rgba = Buffer.alloc(224 * 224 * 4);
    for (let i = 0; i < 224 * 224; i++) {
      gray[i] = rgb[i * 3]!;
      rgba.fill(rgb[i * 3]!, i * 4, i * 4 + 3);
      rgba[i * 4 + 3] = i % 7 === 0 ? 0 : 255; // alpha is dropped, not composited
    }
    const a = await preprocessImage(await png(rgb, 224, 224, 3), spec);
    const b = await preprocessImage(await png(gray, 224, 224, 1), spec);
    const c = await preprocessImage(await png(rgba, 224, 224, 4), spec);
    assert.equal(a.tensor.length, 224 * 224);
    assert.deepEqual(b.tensor, a.tensor);
    assert.deepEqual(c.tensor, a.tensor);
    assert.equal(a.gray[100 * 224 + 100], 240);
    assert.equal(a.tensor[100 * 224 + 100], Math.fround((240 / 255 - 0.5) / 0.25));
  });

  it('stretches any size to the spec and keeps the original for the overlay', async () => {
    const rgb = Buffer.alloc(500 * 300 * 3, 77);
    const p = await preprocessImage(await png(rgb, 500, 300, 3), spec);
    assert.deepEqual([p.width, p.height, p.tensor.length, p.gray.length], [224, 224, 224 * 224, 224 * 224]);
    assert.deepEqual([p.source.width, p.source.height, p.source.gray.length], [500, 300, 500 * 300]);
    assert.ok(p.gray.every((v) => v === 77));
  });

  it('reads JPEG as well as PNG', async () => {
    const jpeg = await sharp(grayScene(), { raw: { width: 224, height: 224, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
    const p = await preprocessImage(jpeg, spec);
    assert.ok(Math.abs(p.gray[100 * 224 + 100]! - 240) <= 3);
  });

  it('gives exactly the same input from a display image\'s pixels as from its PNG', async () => {
    // Gray and colour, at the spec size (no resize) and not (the resize path).
    const scene = grayScene();
    const colour = Buffer.from(scene.map((v, i) => (i % 3 === 0 ? v : i % 3 === 1 ? 255 - v : (v * 7) & 255)));
    const gray = Buffer.alloc(224 * 224);
    for (let i = 0; i < gray.length; i++) gray[i] = scene[i * 3]!;
    const oddGray = Buffer.from(Array.from({ length: 301 * 187 }, (_, i) => (i * 13 + (i >> 5)) & 255));
    const oddColour = Buffer.from(Array.from({ length: 173 * 250 * 3 }, (_, i) => (i * 31 + (i >> 7)) & 255));
    const images: { data: Buffer; width: number; height: number; channels: 1 | 3 }[] = [
      { data: gray, width: 224, height: 224, channels: 1 },
      { data: colour, width: 224, height: 224, channels: 3 },
      { data: oddGray, width: 301, height: 187, channels: 1 },
      { data: oddColour, width: 173, height: 250, channels: 3 },
    ];
    for (const image of images) {
      const file = await sharp(image.data, { raw: image })
        .toColourspace(image.channels === 1 ? 'b-w' : 'srgb')
        .png()
        .toBuffer();
      const fromFile = await preprocessImage(file, spec);
      const fromPixels = await preprocessImage({ ...image, data: new Uint8Array(image.data) }, spec);
      const what = `${image.width}x${image.height}x${image.channels}`;
      assert.deepEqual(fromPixels.tensor, fromFile.tensor, what);
      assert.ok(Buffer.from(fromPixels.rgb).equals(Buffer.from(fromFile.rgb)), what);
      assert.ok(Buffer.from(fromPixels.gray).equals(Buffer.from(fromFile.gray)), what);
      assert.deepEqual([fromPixels.source.width, fromPixels.source.height], [fromFile.source.width, fromFile.source.height]);
      assert.ok(Buffer.from(fromPixels.source.gray).equals(Buffer.from(fromFile.source.gray)), what);
    }
  });

  it('answers unprocessable for bytes that are not an image, or too many pixels', async () => {
    await assert.rejects(preprocessImage(Buffer.from('hello'), spec), (e: unknown) => e instanceof PermanentAnalysisError && e.reason === 'unreadable_image');
    const big = await png(Buffer.alloc(300 * 300 * 3), 300, 300, 3);
    await assert.rejects(preprocessImage(big, spec, { maxPixels: 10_000 }), (e: unknown) => e instanceof PermanentAnalysisError && e.reason === 'unreadable_image');
  });
});

describe('parsePreprocessingSpec', () => {
  it('refuses a spec this code does not implement', () => {
    assert.throws(() => parsePreprocessingSpec({ ...spec, grayscale: 'luma' }), /unsupported preprocessing spec/);
    assert.throws(() => parsePreprocessingSpec({ ...spec, std: 0 }), /unsupported preprocessing spec/);
  });
});
