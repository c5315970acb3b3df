import assert from 'node:assert/strict';
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

  it('is not applied to brain MRI, which has no orientation check yet', () => {
    assert.equal(orientationCheckOf('brain-mri'), null);
  });
});
