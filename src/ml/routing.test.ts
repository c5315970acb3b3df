/**
 * Scan-type routing: the DICOM header's verdict, the image router on real images of both
 * kinds, a declared type the image contradicts, and an image that is neither (refused by the
 * model the router picked). Uses the installed models and the fixture images.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, it } from 'node:test';

import sharp from 'sharp';

import { analyzeScan } from './inference.js';
import { parsePreprocessingSpec, preprocessImage } from './preprocess.js';
import { decideScanType, dicomHint, routeImage, routeImageTurns, type ScanTypeRouter } from './routing.js';
import { blankImage, syntheticDocument, syntheticPhoto } from './synthetic.js';
import { fixture, loadTestModels } from './testing.js';

const { registry, skip } = await loadTestModels();
after(() => registry.close());
const bothSkip = skip['brain-mri'] || skip['chest-xray'];

describe('DICOM header hint', () => {
  it('takes MR of the head as brain MRI and CR/DX of the chest as chest X-ray', () => {
    assert.deepEqual(dicomHint({ modality: 'MR', bodyPartExamined: 'BRAIN' }), {
      kind: 'type',
      scanType: 'brain-mri',
      detail: 'DICOM header: Modality MR, Body Part Examined BRAIN',
    });
    assert.equal((dicomHint({ modality: 'DX', bodyPartExamined: 'CHEST' }) as { scanType: string }).scanType, 'chest-xray');
    assert.equal((dicomHint({ modality: 'CR' }) as { scanType: string }).scanType, 'chest-xray');
  });

  it('refuses another modality or body part, saying what the header says', () => {
    const ct = dicomHint({ modality: 'CT', bodyPartExamined: 'HEAD' });
    assert.equal(ct.kind, 'refuse');
    assert.match((ct as { reason: string }).reason, /Modality CT, Body Part Examined HEAD; ImageMedix analyses brain MRI \(MR of the head\) and chest X-rays \(CR\/DX of the chest\) only/);
    const knee = dicomHint({ modality: 'MR', bodyPartExamined: 'KNEE' });
    assert.equal(knee.kind, 'refuse');
    assert.match((knee as { reason: string }).reason, /scanType/);
  });

  it('leaves it to the image without a modality or for a secondary capture', () => {
    assert.equal(dicomHint(null).kind, 'none');
    assert.equal(dicomHint({}).kind, 'none');
    assert.equal(dicomHint({ modality: 'OT' }).kind, 'none');
  });
});

describe('declared type against the image', () => {
  it('keeps a declared type the image agrees with and refuses one it contradicts', () => {
    const chestLike = { 'brain-mri': 0.02, 'chest-xray': 0.98 };
    const kept = decideScanType(chestLike, { scanType: 'chest-xray', source: 'declared' });
    assert.deepEqual(kept, { ok: true, routing: { scanType: 'chest-xray', source: 'declared', probability: 0.98 } });
    const refused = decideScanType(chestLike, { scanType: 'brain-mri', source: 'declared' });
    assert.equal(refused.ok, false);
    assert.match((refused as { reason: string }).reason, /looks like a chest X-ray \(scan-type check 98\.0%\), but it was declared a brain MRI/);
    const header = decideScanType(chestLike, { scanType: 'brain-mri', source: 'dicom' });
    assert.match((header as { reason: string }).reason, /its DICOM header says brain MRI/);
  });

  it('routes by the image when nothing is declared', () => {
    assert.deepEqual(decideScanType({ 'brain-mri': 0.9, 'chest-xray': 0.1 }, null), {
      ok: true,
      routing: { source: 'image', scanType: 'brain-mri', probability: 0.9 },
    });
  });
});

/** ml/train_router.py's features and logistic regression as they read, pixel by pixel: what routeImage must give to the last bit. */
function plainRoute(rgb: Uint8Array, router: ScanTypeRouter): number {
  const { grid, bins, size } = router;
  const block = size / grid;
  const f = new Float64Array(grid * grid + bins);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const j = (y * size + x) * 3;
      const gray = (rgb[j]! + rgb[j + 1]! + rgb[j + 2]!) / 3 / 255;
      f[Math.floor(y / block) * grid + Math.floor(x / block)]! += gray;
      f[grid * grid + Math.min(bins - 1, Math.floor(gray * bins))]! += 1;
    }
  }
  for (let i = 0; i < grid * grid; i++) f[i]! /= block * block;
  for (let i = 0; i < bins; i++) f[grid * grid + i]! /= size * size;
  let z = router.bias;
  for (let i = 0; i < f.length; i++) z += (router.weights[i]! * (f[i]! - router.mean[i]!)) / router.std[i]!;
  return 1 / (1 + Math.exp(-z));
}

describe('routeImage', () => {
  it('gives the plain formulas to the last bit, from the pixels or from the channel sums preprocessing made', async () => {
    const router = JSON.parse(readFileSync(new URL('./scan-type-router.json', import.meta.url), 'utf8')) as ScanTypeRouter;
    const spec = parsePreprocessingSpec(JSON.parse(readFileSync(new URL('../../ml/preprocessing.json', import.meta.url), 'utf8')));
    for (const image of [await syntheticPhoto(1), await syntheticDocument(2), await blankImage(3), await fixture('brain-mri', 'glioma')]) {
      const prepared = await preprocessImage(image, spec);
      const second = plainRoute(prepared.rgb, router);
      const expected = { [router.types[0]]: 1 - second, [router.types[1]]: second };
      assert.deepEqual(routeImage(prepared.rgb, prepared.width, prepared.height, router), expected);
      assert.deepEqual(routeImage(prepared, prepared.width, prepared.height, router), expected);
    }
  });

  it('gives the verdict on the image turned a quarter turn either way, as on the image turned', async () => {
    const spec = parsePreprocessingSpec(JSON.parse(readFileSync(new URL('../../ml/preprocessing.json', import.meta.url), 'utf8')));
    for (const image of [await fixture('chest-xray', 'normal'), await fixture('brain-mri', 'glioma'), await syntheticDocument(2)]) {
      const prepared = await preprocessImage(image, spec);
      const turns = routeImageTurns(prepared, prepared.width, prepared.height);
      assert.deepEqual(turns.asGiven, routeImage(prepared, prepared.width, prepared.height));
      for (const [angle, turned] of [[90, turns.turnedCw], [270, turns.turnedCcw]] as const) {
        const direct = await preprocessImage(await sharp(prepared.rgb, { raw: { width: 224, height: 224, channels: 3 } }).rotate(angle).png().toBuffer(), spec);
        const expected = routeImage(direct, direct.width, direct.height);
        // The same block means, added in another order: equal to the last few bits.
        assert.ok(Math.abs(turned['chest-xray'] - expected['chest-xray']) < 1e-9, `${angle}: ${turned['chest-xray']} vs ${expected['chest-xray']}`);
      }
    }
  });
});

describe('image router and routed analysis', { skip: bothSkip }, () => {
  const spec = () => registry.get('brain-mri').manifest.preprocessing;
  for (const [task, label] of [
    ['brain-mri', 'glioma'],
    ['brain-mri', 'notumor'],
    ['brain-mri', 'pituitary'],
    ['chest-xray', 'normal'],
    ['chest-xray', 'bacterial'],
    ['chest-xray', 'viral'],
  ] as const) {
    it(`routes the ${task} ${label} fixture to ${task}`, async () => {
      const prepared = await preprocessImage(await fixture(task, label), spec());
      const p = routeImage(prepared.rgb, prepared.width, prepared.height);
      assert.ok(p[task] > 0.9, JSON.stringify(p));
      assert.ok(Math.abs(p['brain-mri'] + p['chest-xray'] - 1) < 1e-9);
    });
  }

  it('analyses an undeclared chest X-ray with the chest model, saying how the type was found', async () => {
    const a = await analyzeScan(registry, await fixture('chest-xray', 'bacterial'), { scanType: null });
    assert.ok(!a.result.refused && a.result.scanType === 'chest-xray', JSON.stringify(a.result));
    assert.equal(a.result.routing?.source, 'image');
    assert.equal(a.result.model?.id, 'chest-xray');
    assert.ok(a.heatmap);
  });

  it('uses a DICOM header type and still checks it against the image', async () => {
    const ok = await analyzeScan(registry, await fixture('brain-mri', 'glioma'), {
      scanType: null,
      dicom: { modality: 'MR', bodyPartExamined: 'HEAD' },
    });
    assert.ok(!ok.result.refused && ok.result.scanType === 'brain-mri');
    assert.equal(ok.result.routing?.source, 'dicom');
    const wrong = await analyzeScan(registry, await fixture('chest-xray', 'normal'), { scanType: null, dicom: { modality: 'MR' } });
    assert.ok(wrong.result.refused);
    assert.match(wrong.result.reason, /looks like a chest X-ray .*DICOM header says brain MRI/);
    const ct = await analyzeScan(registry, await fixture('chest-xray', 'normal'), { scanType: null, dicom: { modality: 'CT' } });
    assert.ok(ct.result.refused && ct.result.check === 'scan_type' && ct.result.scanType === null);
  });

  it('refuses a declared brain MRI that is a chest X-ray without running the brain model', async () => {
    const a = await analyzeScan(registry, await fixture('chest-xray', 'viral'), { scanType: 'brain-mri' });
    assert.ok(a.result.refused);
    assert.equal(a.result.check, 'scan_type');
    assert.equal(a.result.model, null);
    assert.equal(a.timings.modelMs, null);
    assert.match(a.result.reason, /looks like a chest X-ray .*declared a brain MRI/);
  });

  // Most chest X-rays turned 90 degrees look more like a brain MRI to the router, and sent without
  // a type the brain model answered a few of them as brain MRIs (docs/models/README.md).
  for (const label of ['normal', 'bacterial', 'viral'] as const) {
    it(`refuses the ${label} chest X-ray turned 90 degrees either way, sent without a type, saying which way, with no diagnosis`, async () => {
      const image = await fixture('chest-xray', label);
      for (const [angle, way] of [
        [90, 'clockwise \\(its top is on the right\\)'],
        [270, 'counter-clockwise \\(its top is on the left\\)'],
      ] as const) {
        const a = await analyzeScan(registry, await sharp(image).rotate(angle).png().toBuffer(), { scanType: null });
        const r = a.result;
        assert.ok(r.refused, JSON.stringify(r));
        assert.equal(r.check, 'orientation');
        assert.equal(r.scanType, 'chest-xray');
        assert.equal(r.model?.id, 'chest-xray', 'the chest model took it for a chest X-ray turned back');
        assert.equal(a.heatmap, null);
        assert.match(r.reason, new RegExp(`^The image looks like a chest X-ray rotated 90 degrees ${way}: .* No diagnosis was made, it was not analysed as a brain MRI, and the image was not turned automatically\\. Upload the chest X-ray upright\\.`));
        assert.match(r.reason, /If it is a brain MRI, upload it again with its scan type chosen/);
      }
    });
  }

  it('still answers brain MRIs sent without a type, as stored and mirrored left-right', async () => {
    for (const label of ['glioma', 'meningioma', 'notumor', 'pituitary']) {
      const image = await fixture('brain-mri', label);
      for (const form of [image, await sharp(image).flop().png().toBuffer()]) {
        const { result } = await analyzeScan(registry, form, { scanType: null, heatmap: false });
        assert.ok(!result.refused && result.scanType === 'brain-mri', `${label}: ${JSON.stringify(result)}`);
      }
    }
  });

  for (const [name, make] of [
    ['a colour photograph', () => syntheticPhoto(11)],
    ['a grayscale photograph', () => syntheticPhoto(12, { gray: true })],
    ['a document', () => syntheticDocument(13)],
    ['a blank frame', () => blankImage(14)],
  ] as const) {
    it(`refuses ${name} sent without a type, leaving the type unknown`, async () => {
      const a = await analyzeScan(registry, await make(), { scanType: null });
      assert.ok(a.result.refused, JSON.stringify(a.result));
      assert.equal(a.result.scanType, null);
      assert.match(a.result.reason, /not recognised as a brain MRI or a chest X-ray/);
    });
  }
});
