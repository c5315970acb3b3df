/**
 * The analyzer reads display PNGs and writes heatmap PNGs with png.ts instead of sharp: the
 * pixels must be exactly what sharp reads and writes, and every PNG it does not handle must be
 * left to sharp (null), damaged ones included, so sharp still gives its error for them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import sharp, { type PngOptions } from 'sharp';

import { decodePlainPng, encodePlainPng } from './png.js';
import { imageFixture } from './testing/paths.js';
import { pngPixels } from './testing/png.js';
import type { RawImage } from './pixels.js';

/** A smooth picture with texture, so that every row filter sharp may choose is used. */
function picture(width: number, height: number, channels: 1 | 3): RawImage {
  const data = new Uint8Array(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) {
        data[(y * width + x) * channels + c] = (128 + 100 * Math.sin(x / 9 + c) * Math.cos(y / 13) + ((x * 7 + y * 3 + c) % 11)) & 255;
      }
    }
  }
  return { data, width, height, channels };
}

const sharpPng = (image: RawImage, options: PngOptions = {}) =>
  sharp(image.data, { raw: { width: image.width, height: image.height, channels: image.channels } })
    .toColourspace(image.channels === 1 ? 'b-w' : 'srgb')
    .png(options)
    .toBuffer();

describe('decodePlainPng', () => {
  const written: [string, () => Promise<Buffer>][] = [
    ['RGB, level 1, no filter (a display PNG)', () => sharpPng(picture(224, 224, 3), { compressionLevel: 1 })],
    ['grayscale, level 1, no filter', () => sharpPng(picture(224, 224, 1), { compressionLevel: 1 })],
    ['RGB, every row filter, level 9', () => sharpPng(picture(301, 97, 3), { adaptiveFiltering: true, compressionLevel: 9 })],
    ['grayscale, every row filter, odd size', () => sharpPng(picture(37, 53, 1), { adaptiveFiltering: true })],
    ['the grayscale PNG fixture', () => Promise.resolve(imageFixture('chest-normal-1.png'))],
  ];
  for (const [name, png] of written) {
    it(`${name}: the pixels sharp reads`, async () => {
      const bytes = await png();
      const decoded = decodePlainPng(bytes, 1e8);
      assert.ok(decoded, 'decoded here, not left to sharp');
      const expected = await pngPixels(bytes);
      assert.deepEqual([decoded.width, decoded.height, decoded.channels], [expected.width, expected.height, expected.channels]);
      assert.ok(Buffer.from(decoded.data).equals(expected.data));
    });
  }

  it('leaves to sharp what it does not handle: palette, 16 bits, alpha, interlacing, a gamma chunk, a JPEG', async () => {
    const rgb = picture(64, 48, 3);
    const others = [
      await sharpPng(rgb, { palette: true }),
      await sharp(rgb.data, { raw: { width: 64, height: 48, channels: 3 } }).toColourspace('rgb16').png().toBuffer(),
      await sharp(rgb.data, { raw: { width: 64, height: 48, channels: 3 } }).ensureAlpha().png().toBuffer(),
      await sharpPng(rgb, { progressive: true }),
      await sharp(rgb.data, { raw: { width: 64, height: 48, channels: 3 } }).png().withMetadata().toBuffer(),
      imageFixture('brain-glioma-1.jpg'),
    ];
    // withMetadata() adds an ICC profile (iCCP): sharp would colour-manage it.
    for (const [i, png] of others.entries()) assert.equal(decodePlainPng(png, 1e8), null, `case ${i}`);
  });

  it('leaves a damaged or oversized file to sharp (which refuses it as before)', async () => {
    const png = await sharpPng(picture(64, 48, 3), { compressionLevel: 1 });
    const truncated = png.subarray(0, png.length - 40);
    const flipped = Buffer.from(png);
    flipped[60] = flipped[60]! ^ 0xff;
    for (const bad of [truncated, flipped]) {
      assert.equal(decodePlainPng(bad, 1e8), null);
      await assert.rejects(sharp(bad, { failOn: 'error' }).raw().toBuffer());
    }
    assert.equal(decodePlainPng(png, 64 * 48 - 1), null);
    assert.ok(decodePlainPng(png, 64 * 48));
  });
});

describe('encodePlainPng', () => {
  for (const channels of [1, 3] as const) {
    it(`${channels === 1 ? 'grayscale' : 'RGB'}: sharp reads back the same pixels, and so does decodePlainPng`, async () => {
      const image = picture(123, 77, channels);
      const png = encodePlainPng(image);
      const back = await pngPixels(png);
      assert.deepEqual([back.width, back.height, back.channels], [123, 77, channels]);
      assert.ok(back.data.equals(Buffer.from(image.data)));
      assert.ok(Buffer.from(decodePlainPng(png, 1e8)!.data).equals(Buffer.from(image.data)));
    });
  }
});
