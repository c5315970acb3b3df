/**
 * The upload decoder as the API uses it: in worker threads, with a time limit, and with the
 * size guards that stop image and deflate bombs before anything large is allocated.
 */
import assert from 'node:assert/strict';
import { deflateRawSync } from 'node:zlib';
import { after, describe, it } from 'node:test';
import sharp from 'sharp';

import { createImageDecoder } from './decoder.js';
import { ImageDecodeError } from './errors.js';
import { syntheticImage, writeDicom } from './testing/dicom-writer.js';
import { dicomFixture } from './testing/paths.js';

const MAX_PIXELS = 50_000_000;

async function rejectsWith(promise: Promise<unknown>, code: ImageDecodeError['code'], message: RegExp) {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof ImageDecodeError, `expected an ImageDecodeError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, message);
    return true;
  });
}

describe('image decoder pool', () => {
  const decoder = createImageDecoder({ timeoutMs: 20_000, threads: 2 });
  after(() => decoder.close());

  it('decodes a DICOM file in a worker thread and hands back a PNG', async () => {
    const image = await decoder.decode(dicomFixture('MR1_J2KR.dcm'), { maxPixels: MAX_PIXELS });
    assert.equal(image.kind, 'dicom');
    assert.deepEqual([image.width, image.height], [512, 512]);
    assert.ok(Buffer.isBuffer(image.png));
    assert.equal(image.png.subarray(1, 4).toString('latin1'), 'PNG');
    assert.equal(image.dicom?.modality, 'MR');
  });

  it('makes the thumbnail in the thread too, when asked: the whole image within that size', async () => {
    const image = await decoder.decode(dicomFixture('MR1_J2KR.dcm'), { maxPixels: MAX_PIXELS, thumbnailPx: 256 });
    assert.ok(Buffer.isBuffer(image.thumbnail));
    const thumb = await sharp(image.thumbnail).metadata();
    assert.deepEqual([thumb.format, thumb.width, thumb.height], ['png', 256, 256]);
    const without = await decoder.decode(dicomFixture('MR1_J2KR.dcm'), { maxPixels: MAX_PIXELS });
    assert.equal(without.thumbnail, undefined);
  });

  it('refuses a DICOM pixel bomb (65535 x 65535 declared) from its header', async () => {
    const bomb = syntheticImage({ rows: 65535, columns: 65535, values: [0, 0, 0, 0] });
    await rejectsWith(decoder.decode(bomb, { maxPixels: MAX_PIXELS }), 'too_large', /65535x65535 pixels/);
  });

  it('limits pixels per frame: a long series of small frames is accepted', async () => {
    // 1000 declared frames of 64 x 64 (4 M pixels in all) under a 1 M pixel limit.
    const values = Array.from({ length: 64 * 64 * 2 }, (_, i) => i % 4096);
    const series = syntheticImage({ rows: 64, columns: 64, values, frames: 2 });
    const image = await decoder.decode(series, { maxPixels: 64 * 64 });
    assert.deepEqual([image.width, image.height], [64, 64]);
    const tooBig = syntheticImage({ rows: 64, columns: 65, values: Array.from({ length: 64 * 65 }, () => 7) });
    await rejectsWith(decoder.decode(tooBig, { maxPixels: 64 * 64 }), 'too_large', /64.0|0\.0 megapixels/);
  });

  it('refuses a deflate bomb before it expands', async () => {
    // 200 MB of zeros deflate to about 200 KB.
    const inflated = Buffer.alloc(200 * 2 ** 20);
    const empty = writeDicom({ transferSyntaxUid: '1.2.840.10008.1.2.1.99', elements: [] });
    const header = empty.subarray(0, empty.length - deflateRawSync(Buffer.alloc(0)).length);
    const bomb = Buffer.concat([header, deflateRawSync(inflated, { level: 9 })]);
    await rejectsWith(decoder.decode(bomb, { maxPixels: 1_000_000 }), 'too_large', /expands to more than/);
  });

  it('stops a decode that runs past the time limit and says so', async () => {
    const impatient = createImageDecoder({ timeoutMs: 1, threads: 1 });
    try {
      await rejectsWith(
        impatient.decode(dicomFixture('MR1_J2KR.dcm'), { maxPixels: MAX_PIXELS }),
        'corrupt',
        /could not be decoded within/,
      );
    } finally {
      await impatient.close();
    }
  });
});
