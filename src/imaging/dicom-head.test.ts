/**
 * inspectDicomHead: the upload checks of a DICOM file from its first bytes and its size (a
 * large upload streamed to storage) answer as inspectDicom on the whole file does, compressed
 * and deflated files included, or ask for a longer head.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ImageDecodeError, inspectDicom, inspectDicomHead } from './index.js';
import { syntheticImage, writeDicom } from './testing/dicom-writer.js';
import { sharedDicom } from './testing/paths.js';

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

  it('asks for a longer head when the head ends before the pixel data', () => {
    const longHeader = syntheticImage({
      rows: 64,
      columns: 64,
      values: new Uint16Array(64 * 64),
      extra: [{ tag: 0x00091010, vr: 'OB', value: new Uint8Array(HEAD * 2) }],
    });
    assert.equal(inspectDicomHead(longHeader.subarray(0, HEAD), longHeader.length, opts), 'longer-head');
    assert.deepEqual(inspectDicomHead(longHeader.subarray(0, HEAD * 4), longHeader.length, opts), inspectDicom(longHeader, opts));
  });

  for (const file of ['cr_chest/RG1_JLSN.dcm', 'cr_chest/RG1_J2KI.dcm', 'mr_brain/MR1_JPLL.dcm', 'mr_brain/MR1_RLE.dcm']) {
    it(`checks compressed pixel data from the head: ${file}`, () => {
      const whole = sharedDicom(file);
      const inspected = inspectDicom(whole, opts);
      assert.notEqual(inspected, 'deflated');
      assert.deepEqual(inspectDicomHead(whole.subarray(0, HEAD), whole.length, opts), inspected);
    });
  }

  it('refuses compressed pixel data whose fragments in the head do not fit the file, or whose codestream disagrees', () => {
    const fragment = (n: number) => new Uint8Array(HEAD / 4).fill(n);
    const rle = writeDicom({
      transferSyntaxUid: '1.2.840.10008.1.2.5',
      elements: [
        { tag: 0x00280002, vr: 'US', value: [1] },
        { tag: 0x00280004, vr: 'CS', value: 'MONOCHROME2' },
        { tag: 0x00280008, vr: 'IS', value: '8' },
        { tag: 0x00280010, vr: 'US', value: [256] },
        { tag: 0x00280011, vr: 'US', value: [256] },
        { tag: 0x00280100, vr: 'US', value: [8] },
      ],
      pixelData: { fragments: [1, 2, 3, 4, 5, 6, 7, 8].map(fragment) },
    });
    assert.ok(typeof inspectDicomHead(rle.subarray(0, HEAD), rle.length, opts) === 'object');
    // Cut inside the second fragment: the head lists it, longer than what the file holds.
    const [head, cut] = [(HEAD / 8) * 3, (HEAD / 8) * 3.5];
    assert.ok(typeof inspectDicomHead(rle.subarray(0, head), rle.length, opts) === 'object');
    assert.throws(
      () => inspectDicomHead(rle.subarray(0, head), cut, opts),
      (err: unknown) => err instanceof ImageDecodeError && err.code === 'corrupt' && /truncated/.test(err.message),
    );
    // A JPEG-LS file whose DICOM header claims another size than its codestream.
    const jls = Buffer.from(sharedDicom('cr_chest/RG1_JLSN.dcm'));
    const rows = jls.indexOf(Buffer.from([0x28, 0x00, 0x10, 0x00, 0x55, 0x53, 0x02, 0x00]));
    assert.ok(rows > 0);
    jls.writeUInt16LE(jls.readUInt16LE(rows + 8) - 1, rows + 8);
    assert.throws(() => inspectDicom(jls, opts), /JPEG-LS data is a/);
    assert.throws(() => inspectDicomHead(jls.subarray(0, HEAD), jls.length, opts), /JPEG-LS data is a/);
  });

  it('reads the header of a deflated data set from the inflated start of the head', () => {
    const values = new Uint16Array(512 * 512 * 4).map((_, i) => (i * 2654435761) >>> 20);
    const deflated = syntheticImage({ rows: 512, columns: 512, values, frames: 4, transferSyntaxUid: '1.2.840.10008.1.2.1.99' });
    assert.ok(deflated.length > 2 * HEAD);
    const inspected = inspectDicomHead(deflated.subarray(0, HEAD), deflated.length, opts);
    assert.ok(typeof inspected === 'object');
    assert.equal(inspected.width, 512);
    assert.equal(inspected.height, 512);
    assert.equal(inspected.info.transferSyntaxUid, '1.2.840.10008.1.2.1.99');
    // Too many pixels is refused from the inflated header too.
    assert.throws(() => inspectDicomHead(deflated.subarray(0, HEAD), deflated.length, { maxPixels: 1000 }), (err: unknown) =>
      err instanceof ImageDecodeError && err.code === 'too_large',
    );
  });

  it('refuses from the head what inspectDicom refuses: too many pixels', () => {
    const huge = syntheticImage({ rows: 8000, columns: 8000, values: [0], bitsAllocated: 8 });
    assert.throws(() => inspectDicomHead(huge.subarray(0, 4096), 8000 * 8000 + 4096, { maxPixels: 1_000_000 }), (err: unknown) =>
      err instanceof ImageDecodeError && err.code === 'too_large',
    );
  });
});
