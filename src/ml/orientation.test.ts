import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import sharp from 'sharp';

import { checkOrientation, orientationCheckOf } from './orientation.js';
import { parsePreprocessingSpec, preprocessImage } from './preprocess.js';
import { fixture } from './testing.js';

const spec = parsePreprocessingSpec(JSON.parse(readFileSync(new URL('../../ml/preprocessing.json', import.meta.url), 'utf8')));

async function checked(image: Buffer) {
  return checkOrientation(await preprocessImage(image, spec), 'chest-xray');
}

describe('checkOrientation (chest X-ray)', () => {
  it('lets upright chest X-rays through, also mirrored left-right', async () => {
    for (const label of ['normal', 'bacterial', 'viral']) {
      const upright = await fixture('chest-xray', label);
      assert.equal(await checked(upright), null, `${label} upright`);
      assert.equal(await checked(await sharp(upright).flop().png().toBuffer()), null, `${label} mirrored`);
    }
    const jpeg = readFileSync(new URL('../../test/fixtures/images/chest-normal-1.jpeg', import.meta.url));
    assert.equal(await checked(jpeg), null, 'an upright JPEG upload');
  });

  it('says which way a turned chest X-ray is turned and asks for it upright, without turning it', async () => {
    const normal = await fixture('chest-xray', 'normal');
    const cases = [
      [await sharp(normal).rotate(90).png().toBuffer(), /rotated 90 degrees clockwise \(its top is on the right\)/],
      [await sharp(normal).rotate(270).png().toBuffer(), /rotated 90 degrees counter-clockwise \(its top is on the left\)/],
      [await sharp(normal).rotate(180).png().toBuffer(), /upside down/],
      [await sharp(normal).flip().png().toBuffer(), /upside down/],
    ] as const;
    for (const [image, how] of cases) {
      const r = await checked(image);
      assert.equal(r?.check, 'orientation');
      assert.match(r.reason, how);
      assert.match(r.reason, /not turned automatically\. Upload the chest X-ray upright\.$/);
    }
  });

});

describe('checkOrientation (brain MRI)', () => {
  // Rotated brain MRIs were answered (99 of 100 quarter-turned test/ slices, 76 right):
  // docs/models/README.md, "Orientation". The check is served for quarter turns only.
  const brainImages = async () => [
    ...(await Promise.all(['glioma', 'meningioma', 'pituitary', 'notumor'].map((label) => fixture('brain-mri', label)))),
    ...['brain-glioma-1.jpg', 'brain-notumor-1.jpg'].map((f) => readFileSync(new URL(`../../test/fixtures/images/${f}`, import.meta.url))),
  ];
  const brainCheck = orientationCheckOf('brain-mri');
  const brainChecked = async (image: Buffer) => checkOrientation(await preprocessImage(image, spec), 'brain-mri', brainCheck);

  it('is served for quarter turns only: its upside-down verdicts were all false refusals on test/', () => {
    assert.deepEqual(brainCheck?.refuses, ['rotated_cw', 'rotated_ccw']);
  });

  it('has a check of its own: a small CNN on a 56 x 56 thumbnail, its graph the one trained', () => {
    const check = brainCheck;
    assert.equal(check?.kind, 'onnx');
    assert.equal(check.grid, 56);
    const bytes = readFileSync(new URL(`./${check.file}`, import.meta.url));
    assert.equal(createHash('sha256').update(bytes).digest('hex'), check.sha256);
    assert.ok(bytes.length < 500_000, `${bytes.length} bytes`);
  });

  it('lets upright brain MRIs through, also mirrored left-right', async () => {
    for (const [i, image] of (await brainImages()).entries()) {
      assert.equal(await brainChecked(image), null, `image ${i} upright`);
      assert.equal(await brainChecked(await sharp(image).flop().png().toBuffer()), null, `image ${i} mirrored`);
    }
  });

  it('says which way a brain MRI turned a quarter turn is turned, mirrored or not, and asks for it upright', async () => {
    for (const [i, image] of (await brainImages()).entries()) {
      const mirrored = await sharp(image).flop().png().toBuffer();
      const cases = [
        ['cw', await sharp(image).rotate(90).png().toBuffer(), /rotated 90 degrees clockwise \(its top is on the right\)/],
        ['cw mirrored', await sharp(mirrored).rotate(90).png().toBuffer(), /rotated 90 degrees clockwise \(its top is on the right\)/],
        ['ccw', await sharp(image).rotate(270).png().toBuffer(), /rotated 90 degrees counter-clockwise \(its top is on the left\)/],
        ['ccw mirrored', await sharp(mirrored).rotate(270).png().toBuffer(), /rotated 90 degrees counter-clockwise \(its top is on the left\)/],
      ] as const;
      for (const [name, turned, how] of cases) {
        const r = await brainChecked(turned);
        assert.equal(r?.check, 'orientation', `image ${i} ${name}`);
        assert.match(r.reason, how, `image ${i} ${name}`);
        assert.match(r.reason, /The model reads a brain MRI slice only the right way up, .* Upload the brain MRI upright\.$/);
      }
    }
  });

  it('answers a brain MRI it takes for upside down (not refused: such verdicts were high slices alike either way up)', async () => {
    const upsideDown = { ...brainCheck!, refuses: undefined };
    let seen = 0;
    for (const image of await brainImages()) {
      const preprocessed = await preprocessImage(await sharp(image).rotate(180).png().toBuffer(), spec);
      // Only the images the full check would refuse as upside down show the rule at work.
      const full = await checkOrientation(preprocessed, 'brain-mri', upsideDown);
      if (!full) continue;
      assert.match(full.reason, /upside down/);
      seen++;
      assert.equal(await checkOrientation(preprocessed, 'brain-mri', brainCheck), null);
    }
    assert.ok(seen > 0, 'at least one fixture turned upside down is taken for upside down');
  });
});
