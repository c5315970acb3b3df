/**
 * A plain JPEG decoded on the calling thread gives the very pixels sharp gives (decodeRaster,
 * what the display image and the model were made from), and anything sharp would treat
 * differently is left to sharp.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { decodeDisplayPixels, decodeOriginalPixels } from './index.js';
import { decodePlainJpeg } from './jpeg.js';
import { decodeRaster } from './raster.js';
import { imageFixture } from './testing/paths.js';
import { REPO_ROOT } from '../platform/config.js';

const MAX_PIXELS = 50_000_000;
const TIMEOUT = { timeout: 60_000 };

async function assertSamePixels(file: Buffer, name: string) {
  const fast = await decodePlainJpeg(file, MAX_PIXELS);
  assert.ok(fast, `${name}: decoded on this thread`);
  const viaSharp = await decodeRaster(file, 'jpeg', MAX_PIXELS);
  assert.deepEqual([fast.width, fast.height, fast.channels], [viaSharp.width, viaSharp.height, viaSharp.channels], name);
  assert.ok(Buffer.from(fast.data).equals(Buffer.from(viaSharp.data)), `${name}: the same pixels as sharp's`);
}

describe('decodePlainJpeg', () => {
  it('gives the pixels sharp gives for the fixtures, grayscale, progressive and odd-sized JPEGs', TIMEOUT, async () => {
    for (const name of ['brain-glioma-1.jpg', 'brain-notumor-1.jpg', 'chest-normal-1.jpeg', 'chest-bacterial-1.jpeg']) {
      await assertSamePixels(imageFixture(name), name);
    }
    const colour = await sharp(imageFixture('brain-glioma-1.jpg')).resize(131, 77).raw().toBuffer({ resolveWithObject: true });
    const made: [string, Buffer][] = [
      ['grayscale', await sharp(imageFixture('chest-normal-1.png')).toColourspace('b-w').jpeg().toBuffer()],
      ['progressive', await sharp(colour.data, { raw: colour.info }).jpeg({ progressive: true, quality: 70 }).toBuffer()],
      ['4:4:4, odd size', await sharp(colour.data, { raw: colour.info }).jpeg({ chromaSubsampling: '4:4:4', quality: 95 }).toBuffer()],
    ];
    for (const [name, file] of made) await assertSamePixels(file, name);
    const gray = await decodePlainJpeg(made[0]![1], MAX_PIXELS);
    assert.equal(gray?.channels, 1);
  });

  it('gives the pixels sharp gives for every JPEG of the test datasets', TIMEOUT, async (t) => {
    const root = path.resolve(REPO_ROOT, '../shared/datasets');
    if (!existsSync(root)) return t.skip('the shared datasets are not beside the repository');
    let checked = 0;
    for (const dataset of ['brain-mri', 'chest-xray']) {
      const dir = path.join(root, dataset, 'test');
      if (!existsSync(dir)) continue;
      for (const cls of readdirSync(dir)) {
        for (const f of readdirSync(path.join(dir, cls))) {
          await assertSamePixels(readFileSync(path.join(dir, cls, f)), `${dataset}/${cls}/${f}`);
          checked++;
        }
      }
    }
    assert.ok(checked > 0);
  });

  it('leaves to sharp what sharp changes after decoding, what this build cannot read, and damaged files', TIMEOUT, async () => {
    const base = sharp({ create: { width: 40, height: 20, channels: 3, background: '#808080' } });
    const leftToSharp: [string, Buffer][] = [
      ['an EXIF orientation', await base.clone().jpeg().withMetadata({ orientation: 6 }).toBuffer()],
      ['an ICC profile', await base.clone().jpeg().withIccProfile('p3').toBuffer()],
      ['CMYK', await base.clone().toColourspace('cmyk').jpeg().toBuffer()],
      ['truncated', readFileSync(path.join(REPO_ROOT, 'test/fixtures/hostile/truncated.jpg'))],
      ['corrupt', readFileSync(path.join(REPO_ROOT, 'test/fixtures/hostile/corrupt.jpg'))],
      ['cut short', imageFixture('brain-glioma-1.jpg').subarray(0, 3000)],
      ['a PNG', imageFixture('chest-normal-1.png')],
    ];
    for (const [name, file] of leftToSharp) assert.equal(await decodePlainJpeg(file, MAX_PIXELS), null, name);
    // A large upload is checked by its header alone (src/scans/upload.ts), so its analysis is where
    // a file cut inside its entropy-coded data is found: this build rejects it as sharp does
    // (libjpeg's "premature end" warning), rather than filling the rest with grey.
    const noise = { type: 'gaussian' as const, mean: 128, sigma: 60 };
    const large = await sharp({ create: { width: 1400, height: 1400, channels: 3, background: '#808080', noise } }).jpeg({ quality: 95 }).toBuffer();
    assert.ok(await decodePlainJpeg(large, MAX_PIXELS), 'the whole large file is decoded here');
    assert.equal(await decodePlainJpeg(large.subarray(0, large.length - 64 * 1024), MAX_PIXELS), null, 'cut by 64 KB');
    // Over the pixel limit: sharp says so.
    assert.equal(await decodePlainJpeg(imageFixture('brain-glioma-1.jpg'), 224 * 224 - 1), null);
  });
});

describe('decodeOriginalPixels', () => {
  it('gives what decodeDisplayPixels gives, for a JPEG, a rotated JPEG and a PNG, and fails as it fails', TIMEOUT, async () => {
    const rotated = await sharp(imageFixture('brain-glioma-1.jpg')).resize(60, 30).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    for (const file of [imageFixture('brain-glioma-1.jpg'), rotated, imageFixture('chest-normal-1.png')]) {
      const ours = await decodeOriginalPixels(file, { maxPixels: MAX_PIXELS });
      const theirs = await decodeDisplayPixels(file, { maxPixels: MAX_PIXELS });
      assert.deepEqual([ours.width, ours.height, ours.channels], [theirs.width, theirs.height, theirs.channels]);
      assert.ok(Buffer.from(ours.data).equals(Buffer.from(theirs.data)));
    }
    const truncated = readFileSync(path.join(REPO_ROOT, 'test/fixtures/hostile/truncated.jpg'));
    const message = await decodeDisplayPixels(truncated).then(
      () => assert.fail('decoded'),
      (err: Error) => err.message,
    );
    await assert.rejects(decodeOriginalPixels(truncated), (err: Error) => err.message === message);
  });
});
