import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeDicomPixels, decodeUpload, type DicomPixels } from './index.js';
import { pngPixels } from './testing/png.js';
import { dicomFixture, sharedDicom } from './testing/paths.js';

const TIMEOUT = { timeout: 20_000 };

function compare(a: DicomPixels['pixels'], b: DicomPixels['pixels']) {
  assert.equal(a.length, b.length);
  let differing = 0;
  let maxDiff = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (d !== 0) differing++;
    if (d > maxDiff) maxDiff = d;
    sum += d;
  }
  return { differing, maxDiff, meanDiff: sum / a.length };
}

describe('DICOM: the MR1 brain slice in six encodings', () => {
  it('decodes every lossless encoding to exactly the uncompressed pixel values', TIMEOUT, async () => {
    const reference = await decodeDicomPixels(dicomFixture('MR1_UNC.dcm'));
    assert.deepEqual(
      [reference.rows, reference.columns, reference.samplesPerPixel, reference.bitsStored, reference.signed],
      [512, 512, 1, 16, true],
    );
    // A real image, not zeros: MR1's stored values span 0..4000.
    assert.ok(reference.pixels.some((v) => v > 3000));
    const encodings = {
      'JPEG Lossless': dicomFixture('MR1_JPLL.dcm'),
      'JPEG 2000 lossless': dicomFixture('MR1_J2KR.dcm'),
      RLE: sharedDicom('mr_brain/MR1_RLE.dcm'),
      'JPEG-LS lossless': sharedDicom('mr_brain/MR1_JLSL.dcm'),
    };
    for (const [name, bytes] of Object.entries(encodings)) {
      const decoded = await decodeDicomPixels(bytes);
      assert.equal(decoded.pixels.constructor, reference.pixels.constructor, name);
      assert.deepEqual(compare(decoded.pixels, reference.pixels), { differing: 0, maxDiff: 0, meanDiff: 0 }, name);
    }
  });

  it('decodes 12-bit lossy JPEG (JPEG Extended) to within its compression error of the original', TIMEOUT, async () => {
    const reference = await decodeDicomPixels(dicomFixture('MR1_UNC.dcm'));
    const lossy = await decodeDicomPixels(sharedDicom('mr_brain/MR1_JPLY.dcm'));
    assert.deepEqual([lossy.rows, lossy.columns, lossy.bitsStored], [512, 512, 12]);
    const { maxDiff, meanDiff } = compare(lossy.pixels, reference.pixels);
    // The sample set's manifest measured a largest difference of 128 with DCMTK and GDCM.
    assert.ok(maxDiff <= 128, `max difference ${maxDiff}`);
    // About 7:1 lossy compression of values spanning 0..4000: a mean error near 11 (0.3%).
    assert.ok(meanDiff < 16, `mean difference ${meanDiff}`);
    const display = await decodeUpload(sharedDicom('mr_brain/MR1_JPLY.dcm'));
    assert.deepEqual([display.width, display.height], [512, 512]);
  });

  it('renders the same display image from lossless encodings, using the file window 600/1600', TIMEOUT, async () => {
    const unc = await decodeUpload(dicomFixture('MR1_UNC.dcm'));
    assert.equal(unc.kind, 'dicom');
    assert.deepEqual([unc.width, unc.height], [512, 512]);
    const a = await pngPixels(unc.png);
    assert.equal(a.channels, 1);
    for (const file of [dicomFixture('MR1_J2KR.dcm'), dicomFixture('MR1_JPLL.dcm'), sharedDicom('mr_brain/MR1_RLE.dcm'), sharedDicom('mr_brain/MR1_JLSL.dcm')]) {
      const b = await pngPixels((await decodeUpload(file)).png);
      assert.ok(a.data.equals(b.data), 'a lossless encoding renders differently');
    }
    // Window 600/1600 (LINEAR) spans -200..1400: stored 0 (air) is dark gray, 1400 and above white.
    const raw = (await decodeDicomPixels(dicomFixture('MR1_UNC.dcm'))).pixels;
    const black = raw.findIndex((v) => v === 0);
    const white = raw.findIndex((v) => v >= 1400);
    assert.equal(a.data[black], 32);
    assert.equal(a.data[white], 255);
  });

  it('reads the DICOM attributes into DicomInfo', TIMEOUT, async () => {
    const { dicom } = await decodeUpload(dicomFixture('MR1_UNC.dcm'));
    assert.deepEqual(dicom, {
      patientId: '4MR1',
      patientName: 'MR1 CompressedSamples',
      studyDate: '2004-08-26',
      modality: 'MR',
      studyInstanceUid: '1.3.6.1.4.1.5962.1.2.4.20040826185059.5457',
      seriesInstanceUid: '1.3.6.1.4.1.5962.1.3.4.1.20040826185059.5457',
      sopInstanceUid: '1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457',
      pixelSpacing: [0.3125, 0.3125],
      transferSyntaxUid: '1.2.840.10008.1.2.1',
      rows: 512,
      columns: 512,
      numberOfFrames: 1,
      photometricInterpretation: 'MONOCHROME2',
      bitsAllocated: 16,
    });
  });
});

describe('DICOM: the RG1 chest radiograph (1841x1955, MONOCHROME1)', () => {
  it('decodes JPEG-LS near-lossless to exactly the values GDCM decoded', TIMEOUT, async () => {
    const reference = await decodeDicomPixels(sharedDicom('cr_chest/derived/RG1_native_decoded_from_JLSN.dcm'));
    const jls = await decodeDicomPixels(sharedDicom('cr_chest/RG1_JLSN.dcm'));
    assert.deepEqual([jls.columns, jls.rows, jls.bitsStored], [1841, 1955, 15]);
    assert.equal(compare(jls.pixels, reference.pixels).differing, 0);
  });

  it('decodes lossy JPEG 2000 close to the same image', TIMEOUT, async () => {
    const reference = await decodeDicomPixels(sharedDicom('cr_chest/derived/RG1_native_decoded_from_JLSN.dcm'));
    const j2k = await decodeDicomPixels(sharedDicom('cr_chest/RG1_J2KI.dcm'));
    const { meanDiff, maxDiff } = compare(j2k.pixels, reference.pixels);
    // 15-bit data: a mean error under 0.5% of the range, no error over 2%.
    assert.ok(meanDiff < 0.005 * 32767, `mean ${meanDiff}`);
    assert.ok(maxDiff < 0.02 * 32767, `max ${maxDiff}`);
  });

  it('renders within seconds, bones white and the air outside the body dark', TIMEOUT, async () => {
    const started = Date.now();
    const result = await decodeUpload(sharedDicom('cr_chest/RG1_J2KI.dcm'));
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 5000, `took ${elapsed} ms`);
    assert.deepEqual([result.width, result.height], [1841, 1955]);
    assert.equal(result.dicom?.modality, 'CR');
    assert.equal(result.dicom?.bodyPartExamined, 'CHEST');
    // Pixel Spacing is 0.000\0.000 in this file: unknown, so left out rather than reported as 0.
    assert.equal(result.dicom?.pixelSpacing, undefined);
    const { data, width } = await pngPixels(result.png);
    const mean = (x0: number, y0: number, size: number) => {
      let sum = 0;
      for (let y = y0; y < y0 + size; y++) for (let x = x0; x < x0 + size; x++) sum += data[y * width + x]!;
      return sum / (size * size);
    };
    // MONOCHROME1: high stored values are dark. The mediastinum must come out brighter than the
    // lung fields either side of it, as on any chest radiograph.
    const mediastinum = mean(900, 600, 40);
    const rightLung = mean(440, 600, 40);
    const leftLung = mean(1400, 600, 40);
    assert.ok(mediastinum > rightLung + 30 && mediastinum > leftLung + 30, `${mediastinum} vs ${rightLung} / ${leftLung}`);
  });

  it('applies the file window 15000/30000 and then inverts MONOCHROME1', TIMEOUT, async () => {
    const bytes = sharedDicom('cr_chest/derived/RG1_native_decoded_from_JLSN.dcm');
    const { pixels } = await decodeDicomPixels(bytes);
    const { data } = await pngPixels((await decodeUpload(bytes)).png);
    const [c, w] = [15000, 30000];
    for (let i = 0; i < pixels.length; i += 7919) {
      const x = pixels[i]!;
      const windowed = x <= c - 0.5 - (w - 1) / 2 ? 0 : x > c - 0.5 + (w - 1) / 2 ? 255 : ((x - (c - 0.5)) / (w - 1) + 0.5) * 255;
      assert.ok(Math.abs(data[i]! - (255 - windowed)) <= 1, `pixel ${i}: stored ${x} shown ${data[i]}`);
    }
  });
});

describe('DICOM: multi-frame files (first frame only)', () => {
  it('decodes the first frame of RLE and uncompressed enhanced MR identically', TIMEOUT, async () => {
    const native = await decodeDicomPixels(sharedDicom('multiframe/emri_small.dcm'));
    const rle = await decodeDicomPixels(dicomFixture('emri_small_RLE.dcm'));
    assert.deepEqual([native.rows, native.columns, native.pixels.length], [64, 64, 64 * 64]);
    assert.equal(native.info.numberOfFrames, 10);
    assert.equal(compare(rle.pixels, native.pixels).differing, 0);
  });

  it('uses the Basic Offset Table and the functional-group window of an enhanced CT', TIMEOUT, async () => {
    const bytes = sharedDicom('multiframe/CT0012.not_fragmented_bot_rle.dcm');
    const { pixels, info } = await decodeDicomPixels(bytes);
    assert.equal(info.numberOfFrames, 2);
    // Spacing and anatomy come from the functional groups, not top-level attributes.
    assert.deepEqual(info.pixelSpacing, [0.388672, 0.388672]);
    assert.equal(info.bodyPartExamined, 'BRAIN');
    const { data } = await pngPixels((await decodeUpload(bytes)).png);
    // Shared functional groups: Rescale Intercept -1024, slope 1; window 49/102 (LINEAR).
    const expected = (stored: number) => {
      const x = stored - 1024;
      const [c, w] = [49, 102];
      if (x <= c - 0.5 - (w - 1) / 2) return 0;
      if (x > c - 0.5 + (w - 1) / 2) return 255;
      return Math.round(((x - (c - 0.5)) / (w - 1) + 0.5) * 255);
    };
    let checked = 0;
    for (let i = 0; i < pixels.length; i += 997) {
      assert.ok(Math.abs(data[i]! - expected(pixels[i]!)) <= 1, `pixel ${i}`);
      checked++;
    }
    assert.ok(checked > 200);
  });

  it('finds the first frame of fragmented JPEG Baseline without an offset table', TIMEOUT, async () => {
    const result = await decodeUpload(sharedDicom('multiframe/IM00001.fragmented_no_bot_jpeg_baseline.50.dcm'));
    assert.deepEqual([result.width, result.height], [320, 240]);
    const { channels } = await pngPixels(result.png);
    assert.equal(channels, 3);
  });

  it('shows YBR_FULL_422 JPEG ultrasound in true colour (gray stays gray)', TIMEOUT, async () => {
    const { pixels, photometricInterpretation } = await decodeDicomPixels(sharedDicom('multiframe/examples_ybr_color.dcm'));
    assert.equal(photometricInterpretation, 'RGB');
    // Ultrasound is mostly gray: if YCbCr were shown as RGB, R and G would differ by ~100.
    let diff = 0;
    for (let i = 0; i < pixels.length; i += 3) diff += Math.abs(pixels[i]! - pixels[i + 1]!);
    assert.ok(diff / (pixels.length / 3) < 3);
  });
});
