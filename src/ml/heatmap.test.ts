import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import sharp from 'sharp';

import { explainClass, findHotRegion, normaliseMap, resizeBilinear, tumorLocation } from './heatmap.js';

/** A 14 x 14 map with a bump of `value` at (cx, cy) and a weaker bump elsewhere. */
function mapWithPeak(cx: number, cy: number, value = 10): Float32Array {
  const m = new Float32Array(14 * 14).fill(-1);
  for (let y = 0; y < 14; y++) {
    for (let x = 0; x < 14; x++) {
      const d2 = (x - cx) ** 2 + (y - cy) ** 2;
      m[y * 14 + x] = value * Math.exp(-d2 / 2) + 0.3 * value * Math.exp(-((x - 2) ** 2 + (y - 12) ** 2) / 2) - 1;
    }
  }
  return m;
}

describe('normaliseMap', () => {
  it('drops negative evidence and scales the peak to 1', () => {
    assert.deepEqual(Array.from(normaliseMap(Float32Array.from([-3, 0, 2, 4]))), [0, 0, 0.5, 1]);
  });

  it('gives an all-zero map when nothing is positive', () => {
    assert.deepEqual(Array.from(normaliseMap(Float32Array.from([-3, -1]))), [0, 0]);
  });
});

describe('resizeBilinear', () => {
  it('keeps a constant map constant and interpolates between pixel centres', () => {
    assert.ok(resizeBilinear(new Float32Array(4).fill(0.7), 2, 2, 5, 3).every((v) => Math.abs(v - 0.7) < 1e-6));
    const up = resizeBilinear(Float32Array.from([0, 1]), 2, 1, 4, 1);
    assert.deepEqual(Array.from(up, (v) => Math.round(v * 100) / 100), [0, 0.25, 0.75, 1]);
  });
});

describe('findHotRegion', () => {
  it('boxes the region around the peak in image pixels, not the weaker bump', () => {
    const map = normaliseMap(mapWithPeak(10, 3));
    const box = findHotRegion(map, 14, 14, 1400, 700);
    assert.ok(box);
    // peak at map cell (10, 3) = image centre (1050, 175); the weaker bump sits at (250, 625)
    assert.ok(box.x < 1050 && box.x + box.width > 1050, JSON.stringify(box));
    assert.ok(box.y < 175 && box.y + box.height > 175, JSON.stringify(box));
    assert.ok(box.x > 500 && box.y + box.height < 500, 'the weaker bump is not included');
    assert.ok(box.x + box.width <= 1400 && box.y + box.height <= 700);
  });

  it('finds nothing in a flat map', () => {
    assert.equal(findHotRegion(new Float32Array(196), 14, 14, 224, 224), null);
  });
});

describe('explainClass', () => {
  it('renders a PNG at the image size from the chosen class map', async () => {
    const cam = new Float32Array(2 * 196);
    cam.set(mapWithPeak(3, 3), 0);
    cam.set(mapWithPeak(11, 11), 196);
    const image = { gray: new Uint8Array(300 * 200).fill(90), width: 300, height: 200 };
    const { heatmap, hotRegion } = await explainClass(cam, 1, 14, 14, image);
    assert.ok(heatmap && hotRegion);
    const meta = await sharp(heatmap.png).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 300, 200]);
    assert.ok(hotRegion.x > 150 && hotRegion.y > 100, `class 1 peak is bottom right: ${JSON.stringify(hotRegion)}`);
    // the hot spot is tinted red over the gray of 90; a cold pixel is tinted blue
    const { data } = await sharp(heatmap.png).raw().toBuffer({ resolveWithObject: true });
    const px = (x: number, y: number) => [...data.subarray((y * 300 + x) * 3, (y * 300 + x) * 3 + 3)];
    const hot = px(Math.round((11.5 / 14) * 300), Math.round((11.5 / 14) * 200));
    assert.ok(hot[0]! > 100 && hot[0]! - hot[2]! > 50, `hot pixel ${[...hot].join(',')}`);
    const cold = px(150, 5);
    assert.ok(cold[2]! > cold[0]!, `cold pixel ${[...cold].join(',')}`);
  });
});

describe('tumorLocation', () => {
  it("maps image right to the patient's left and says it is approximate attention", () => {
    const text = tumorLocation({ x: 150, y: 20, width: 40, height: 40 }, 224, 224);
    assert.match(text, /^Approximate: image right, upper part of the slice \(patient's left/);
    assert.match(text, /not a segmentation/);
  });

  it("maps image left to the patient's right", () => {
    assert.match(tumorLocation({ x: 10, y: 150, width: 40, height: 50 }, 224, 224), /image left, lower part.*patient's right/);
  });

  it('calls a central box midline', () => {
    assert.match(tumorLocation({ x: 90, y: 90, width: 44, height: 44 }, 224, 224), /central part of the slice, near the vertical midline/);
  });
});
