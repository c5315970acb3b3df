import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { parsePreprocessingSpec, preprocessImage } from './preprocess.js';
import { checkDistance, checkInput, checkShape, imageStats } from './refusal.js';
import { blankImage, noiseImage, syntheticDocument, syntheticPhoto } from './synthetic.js';

const spec = parsePreprocessingSpec(JSON.parse(readFileSync(new URL('../../ml/preprocessing.json', import.meta.url), 'utf8')));

async function statsOf(image: Buffer) {
  const p = await preprocessImage(image, spec);
  return imageStats(p.rgb, p.width, p.height);
}

/** A smooth gray "scan": a bright disc with soft texture on black, like an MRI slice. */
function scanLike(): Uint8Array {
  const rgb = new Uint8Array(224 * 224 * 3);
  for (let y = 0; y < 224; y++) {
    for (let x = 0; x < 224; x++) {
      const r = Math.hypot(x - 112, y - 112);
      const v = r < 90 ? Math.round(120 + 60 * Math.sin(x / 9) * Math.cos(y / 11)) : 5;
      rgb.fill(v, (y * 224 + x) * 3, (y * 224 + x) * 3 + 3);
    }
  }
  return rgb;
}

describe('input checks', () => {
  it('let a grayscale scan-like image through', () => {
    assert.equal(checkInput(imageStats(scanLike(), 224, 224), 'brain-mri'), null);
  });

  it('refuse blank frames, colour pictures and noise, each with its own reason', async () => {
    for (let seed = 0; seed < 4; seed++) {
      assert.equal(checkInput(await statsOf(await blankImage(seed)), 'brain-mri')?.check, 'blank');
      assert.equal(checkInput(await statsOf(await syntheticPhoto(seed)), 'chest-xray')?.check, 'colour');
      const noise = checkInput(await statsOf(await noiseImage(seed)), 'chest-xray');
      assert.ok(noise && ['noise', 'colour'].includes(noise.check), JSON.stringify(noise));
    }
    const reason = checkInput(await statsOf(await syntheticPhoto(1)), 'chest-xray')?.reason ?? '';
    assert.match(reason, /colour.*chest X-ray is grayscale/);
  });

  it('leave grayscale documents to the model-side check', async () => {
    assert.equal(checkInput(await statsOf(await syntheticDocument(1)), 'chest-xray'), null);
  });

  it('measure noise as uncorrelated neighbours', async () => {
    const s = await statsOf(await noiseImage(3));
    assert.ok(s.highFrequencyRatio > 0.7, String(s.highFrequencyRatio));
    assert.ok(imageStats(scanLike(), 224, 224).highFrequencyRatio < 0.1);
  });
});

/**
 * The statistics as their definitions read, pixel by pixel: what imageStats's one-pass loop must
 * give to the last bit. The definitions themselves are pinned by the hand-worked values below.
 */
function plainStats(rgb: Uint8Array, width: number, height: number) {
  const n = width * height;
  const gray = (i: number) => (rgb[3 * i]! + rgb[3 * i + 1]! + rgb[3 * i + 2]!) / 3;
  let sum = 0;
  let chromaSum = 0;
  let colourful = 0;
  for (let i = 0; i < n; i++) {
    sum += gray(i);
    const c = Math.max(rgb[3 * i]!, rgb[3 * i + 1]!, rgb[3 * i + 2]!) - Math.min(rgb[3 * i]!, rgb[3 * i + 1]!, rgb[3 * i + 2]!);
    chromaSum += c;
    if (c > 40) colourful++;
  }
  const mean = sum / n;
  let variance = 0;
  let diff = 0;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = gray(y * width + x);
      variance += (v - mean) ** 2;
      if (x + 1 < width) diff += (gray(y * width + x + 1) - v) ** 2;
      if (y + 1 < height) diff += (gray((y + 1) * width + x) - v) ** 2;
    }
  }
  variance /= n;
  const pairs = (width - 1) * height + width * (height - 1);
  return {
    grayStd: Math.sqrt(variance),
    meanChroma: chromaSum / n,
    colourfulFraction: colourful / n,
    highFrequencyRatio: variance > 0 ? diff / pairs / (2 * variance) : 0,
  };
}

describe('imageStats', () => {
  it('gives the values worked out by hand for small images', () => {
    const gray = (...values: number[]) => Uint8Array.from(values.flatMap((v) => [v, v, v]));
    // A 2 x 2 checkerboard of black and white: every neighbour differs, twice the variance.
    assert.deepEqual(imageStats(gray(0, 255, 255, 0), 2, 2), { grayStd: 127.5, meanChroma: 0, colourfulFraction: 0, highFrequencyRatio: 2 });
    // A ramp 0, 10, 20, 30: mean 15, variance 125, neighbour differences 100 each.
    assert.deepEqual(imageStats(gray(0, 10, 20, 30), 4, 1), { grayStd: Math.sqrt(125), meanChroma: 0, colourfulFraction: 0, highFrequencyRatio: 0.4 });
    // Pure red beside dark gray: chroma 255 and 0, grays 85 and 10.
    assert.deepEqual(imageStats(Uint8Array.of(255, 0, 0, 10, 10, 10), 2, 1), { grayStd: 37.5, meanChroma: 127.5, colourfulFraction: 0.5, highFrequencyRatio: 2 });
    // A uniform frame has no variance, and no ratio to divide by it.
    assert.deepEqual(imageStats(gray(7, 7, 7, 7, 7, 7), 3, 2), { grayStd: 0, meanChroma: 0, colourfulFraction: 0, highFrequencyRatio: 0 });
  });

  it('gives the plain formulas to the last bit, from the pixels or from the channel sums preprocessing made', async () => {
    const images = [await syntheticPhoto(2), await noiseImage(1), await syntheticDocument(3), await blankImage(0)];
    for (const image of images) {
      const p = await preprocessImage(image, spec);
      const expected = plainStats(p.rgb, p.width, p.height);
      assert.deepEqual(imageStats(p.rgb, p.width, p.height), expected);
      assert.deepEqual(imageStats(p.rgb, p.width, p.height, p.channelSums), expected);
    }
    // a tinted image (gray values that are not whole numbers), and odd shapes: one row, one column
    for (const [w, h] of [[224, 224], [7, 1], [1, 5], [3, 2]] as const) {
      const rgb = Uint8Array.from({ length: w * h * 3 }, (_, i) => Math.round(120 + 50 * Math.sin(i / 700) + ((i * 37) % 13)));
      assert.deepEqual(imageStats(rgb, w, h), plainStats(rgb, w, h));
    }
  });
});

describe('checkDistance', () => {
  it('refuses above the threshold and when the score is not a number', () => {
    assert.equal(checkDistance(10, 20, 'brain-mri'), null);
    assert.equal(checkDistance(25, 20, 'brain-mri')?.check, 'out_of_distribution');
    assert.match(checkDistance(25, 20, 'brain-mri')?.reason ?? '', /brain MRI slice images this model was trained on/);
    assert.equal(checkDistance(Number.NaN, 20, 'chest-xray')?.check, 'out_of_distribution');
  });
});

describe('checkShape', () => {
  it('lets through every shape a scan comes in: square, 4:3 MR, 14 x 17 inch radiographs either way, a 16:9 screenshot', () => {
    for (const [w, h] of [[224, 224], [64, 64], [320, 240], [1841, 1955], [2500, 2048], [1920, 1080]] as const) {
      assert.equal(checkShape(w, h, 'chest-xray'), null, `${w} x ${h}`);
    }
  });

  it('refuses a strip or a sliver, in either orientation, and says what to upload instead', () => {
    for (const [w, h] of [[4000, 20], [20, 4000], [1000, 390]] as const) {
      const r = checkShape(w, h, 'chest-xray');
      assert.equal(r?.check, 'shape', `${w} x ${h}`);
      assert.match(r.reason, new RegExp(`${w} x ${h} pixels .*a chest X-ray.*Upload the whole image`));
    }
    assert.match(checkShape(1000, 390, 'brain-mri')?.reason ?? '', /long side 2\.6 times its short side/);
  });

  it('refuses a thumbnail too small to show anatomy', () => {
    const r = checkShape(24, 30, 'brain-mri');
    assert.equal(r?.check, 'shape');
    assert.match(r.reason, /only 24 x 30 pixels, too small .* a brain MRI slice.*original image/);
  });
});
