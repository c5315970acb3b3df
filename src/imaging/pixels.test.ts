/**
 * An upload is decoded once: its display PNG, its thumbnail and the pixels the analysis starts
 * from all come from one decode, and hold what the former way (PNG first, then the thumbnail and
 * the model's input decoded from that PNG) gave.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { decodeUpload } from './index.js';
import { pngPixels } from './testing/png.js';
import { dicomFixture, imageFixture } from './testing/paths.js';

const TIMEOUT = { timeout: 30_000 };

const asRgb = ({ data, channels }: { data: Buffer; channels: number }): Buffer =>
  channels === 3 ? data : Buffer.from(Array.from(data).flatMap((v) => [v, v, v]));

const cases: [string, () => Buffer][] = [
  ['colour JPEG', () => imageFixture('brain-glioma-1.jpg')],
  ['grayscale PNG', () => imageFixture('chest-normal-1.png')],
  ['DICOM MR, 512 px (a thumbnail smaller than the image)', () => dicomFixture('MR1_UNC.dcm')],
  ['DICOM RGB', () => dicomFixture('SC_rgb_small_odd.dcm')],
];

describe('decodeUpload: one decode for the PNG, the thumbnail and the pixels', () => {
  for (const [name, file] of cases) {
    it(`${name}: the PNG holds the pixels, the thumbnail is the PNG's as it was made before`, TIMEOUT, async () => {
      const decoded = await decodeUpload(file(), { thumbnailPx: 256, withPixels: true });
      assert.ok(decoded.pixels && decoded.thumbnail);
      const { pixels } = decoded;
      const png = await pngPixels(decoded.png);
      assert.deepEqual([pixels.width, pixels.height, pixels.channels], [png.width, png.height, png.channels]);
      assert.ok(Buffer.from(pixels.data).equals(png.data), 'the display PNG holds exactly the pixels handed on');
      // The thumbnail as it was made before: from the display PNG, decoded again.
      const former = await pngPixels(
        await sharp(decoded.png).resize(256, 256, { fit: 'inside', withoutEnlargement: true }).png().toBuffer(),
      );
      const thumbnail = await pngPixels(decoded.thumbnail);
      assert.deepEqual([thumbnail.width, thumbnail.height], [former.width, former.height]);
      // A grayscale thumbnail was written as RGB (three equal channels); it is one channel now.
      assert.equal(thumbnail.channels, pixels.channels);
      assert.ok(asRgb(thumbnail).equals(asRgb(former)));
    });
  }

  it('hands back no pixels unless asked (the upload path needs none)', TIMEOUT, async () => {
    const decoded = await decodeUpload(imageFixture('brain-glioma-1.jpg'), { thumbnailPx: 256 });
    assert.equal(decoded.pixels, undefined);
    // Within the thumbnail size: the image is its own thumbnail.
    assert.ok(decoded.thumbnail?.equals(decoded.png));
  });
});
