/**
 * inspectDicomHead: the upload checks of a DICOM file from its first bytes and its size (a
 * large upload streamed to storage) answer as inspectDicom on the whole file does, or say
 * that the whole file is needed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ImageDecodeError, inspectDicom, inspectDicomHead } from './index.js';
import { syntheticImage, writeDicom } from './testing/dicom-writer.js';

const opts = { maxPixels: 50_000_000 };
const HEAD = 64 * 1024;

function series(frames: number, layout?: 'part10' | 'meta-without-preamble' | 'bare-dataset', transferSyntaxUid?: string): Buffer {
  const values = new Uint16Array(256 * 256 * frames).map((_, i) => i & 0xfff);
  return syntheticImage({ rows: 256, columns: 256, values, frames, layout, transferSyntaxUid });
}

describe('inspectDicomHead', () => {
  for (const [name, file] of [
    ['explicit VR little endian, Part 10', series(8)],
    ['implicit VR, meta without preamble', series(8, 'meta-without-preamble', '1.2.840.10008.1.2')],
    ['bare data set', series(8, 'bare-dataset')],
  ] as const) {
    it(`answers as inspectDicom on the whole file: ${name}`, () => {
      const whole = inspectDicom(file, opts);
      assert.notEqual(whole, 'deflated');
      assert.deepEqual(inspectDicomHead(file.subarray(0, HEAD), file.length, opts), whole);
      // The same head of a file that lost its last bytes: truncated, as inspectDicom says.
      assert.throws(() => inspectDicom(file.subarray(0, file.length - 2), opts), /truncated/);
      assert.throws(
        () => inspectDicomHead(file.subarray(0, HEAD), file.length - 2, opts),
        (err: unknown) => err instanceof ImageDecodeError && err.code === 'corrupt' && /truncated/.test(err.message),
      );
    });
  }

  it('needs the whole file when the head ends before the pixel data, or the pixel data is compressed', () => {
    const longHeader = syntheticImage({
      rows: 64,
      columns: 64,
      values: new Uint16Array(64 * 64),
      extra: [{ tag: 0x00091010, vr: 'OB', value: new Uint8Array(HEAD * 2) }],
    });
    assert.equal(inspectDicomHead(longHeader.subarray(0, HEAD), longHeader.length, opts), 'whole-file');
    const rle = writeDicom({
      transferSyntaxUid: '1.2.840.10008.1.2.5',
      elements: [
        { tag: 0x00280002, vr: 'US', value: [1] },
        { tag: 0x00280004, vr: 'CS', value: 'MONOCHROME2' },
        { tag: 0x00280010, vr: 'US', value: [256] },
        { tag: 0x00280011, vr: 'US', value: [256] },
        { tag: 0x00280100, vr: 'US', value: [8] },
      ],
      pixelData: { fragments: [new Uint8Array(HEAD * 2)] },
    });
    assert.equal(inspectDicomHead(rle.subarray(0, HEAD), rle.length, opts), 'whole-file');
  });

  it('refuses from the head what inspectDicom refuses: too many pixels', () => {
    const huge = syntheticImage({ rows: 8000, columns: 8000, values: [0], bitsAllocated: 8 });
    assert.throws(() => inspectDicomHead(huge.subarray(0, 4096), 8000 * 8000 + 4096, { maxPixels: 1_000_000 }), (err: unknown) =>
      err instanceof ImageDecodeError && err.code === 'too_large',
    );
  });
});
