import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sniffImageKind } from './index.js';
import { dicomFixture, imageFixture, sharedDicom } from './testing/paths.js';
import { syntheticImage } from './testing/dicom-writer.js';

describe('sniffImageKind', () => {
  it('recognises JPEG and PNG by their signatures', () => {
    assert.equal(sniffImageKind(imageFixture('brain-glioma-1.jpg')), 'jpeg');
    assert.equal(sniffImageKind(imageFixture('chest-normal-1.png')), 'png');
  });

  it('recognises DICOM Part 10 by DICM at offset 128', () => {
    assert.equal(sniffImageKind(dicomFixture('MR1_UNC.dcm')), 'dicom');
    assert.equal(sniffImageKind(dicomFixture('MR_small_implicit.dcm')), 'dicom');
  });

  it('accepts a file meta group or a bare data set without the preamble', () => {
    const image = { rows: 2, columns: 2, values: [1, 2, 3, 4] };
    assert.equal(sniffImageKind(syntheticImage({ ...image, layout: 'meta-without-preamble' })), 'dicom');
    assert.equal(sniffImageKind(syntheticImage({ ...image, layout: 'bare-dataset' })), 'dicom');
    assert.equal(
      sniffImageKind(syntheticImage({ ...image, layout: 'bare-dataset', transferSyntaxUid: '1.2.840.10008.1.2' })),
      'dicom',
    );
  });

  it('refuses a headerless data set that does not begin with a well-formed element', () => {
    // pydicom's no_meta.dcm: a stray byte before the first element.
    assert.equal(sniffImageKind(sharedDicom('edge/no_meta.dcm')), null);
  });

  it('does not take random bytes that start like a DICOM tag for DICOM', () => {
    const lookalikes = [
      Buffer.from([0x08, 0x00, 0x05, 0x00, 0x43, 0x53, 0xff, 0x7f, 1, 2, 3, 4]), // length past the end
      Buffer.from([0x02, 0x00, 0x01, 0x00, 0x5a, 0x5a, 0x02, 0x00, 0, 0, 0, 0]), // 'ZZ' is no VR
      Buffer.concat([Buffer.from([0x08, 0x00, 0x05, 0x00, 0x02, 0, 0, 0, 0x41, 0x42]), Buffer.alloc(8, 0xff)]),
      Buffer.from('DICM but not at offset 128'),
    ];
    for (const bytes of lookalikes) assert.equal(sniffImageKind(bytes), null, bytes.toString('hex'));
  });

  it('answers null for non-images, whatever they are called', () => {
    assert.equal(sniffImageKind(Buffer.from('%PDF-1.7\n...')), null);
    assert.equal(sniffImageKind(Buffer.from('GIF89a')), null);
    assert.equal(sniffImageKind(Buffer.alloc(0)), null);
    assert.equal(sniffImageKind(Buffer.from([0xff, 0xd8])), null);
  });
});
