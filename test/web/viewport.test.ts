// The viewer's mapping between the canvas and the image's own pixels (web/src/lib/viewport.ts)
// under node: an annotation is stored where the doctor pointed, whatever the zoom and pan.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { arrowPan, fitView, panBy, placementAt, placementAtCentre, toCanvas, toImage, zoomAt } from '../../web/src/lib/viewport.js';

const image = { width: 512, height: 256 };
const box = { width: 800, height: 600 };

describe('viewport', () => {
  test('fit centres the whole image in the canvas with a margin', () => {
    const v = fitView(box, image);
    assert.ok(Math.abs(v.scale - (800 / 512) * 0.96) < 1e-9);
    const topLeft = toCanvas(v, { x: 0, y: 0 });
    const bottomRight = toCanvas(v, { x: 512, y: 256 });
    assert.ok(Math.abs(topLeft.x + bottomRight.x - 800) < 1e-9, 'centred horizontally');
    assert.ok(Math.abs(topLeft.y + bottomRight.y - 600) < 1e-9, 'centred vertically');
    assert.ok(topLeft.x > 0 && bottomRight.x < 800);
  });

  test('canvas → image → canvas is the identity at any zoom and pan', () => {
    let v = fitView(box, image);
    v = zoomAt(v, 3.7, 123, 456);
    v = panBy(v, -55, 31);
    for (const p of [{ x: 0, y: 0 }, { x: 400, y: 300 }, { x: 799, y: 1 }]) {
      const back = toCanvas(v, toImage(v, p));
      assert.ok(Math.abs(back.x - p.x) < 1e-9 && Math.abs(back.y - p.y) < 1e-9);
    }
  });

  test('zooming about a point keeps the image point under it in place', () => {
    const v = fitView(box, image);
    const under = toImage(v, { x: 300, y: 200 });
    const zoomed = zoomAt(v, 2, 300, 200);
    const after = toImage(zoomed, { x: 300, y: 200 });
    assert.ok(Math.abs(after.x - under.x) < 1e-9 && Math.abs(after.y - under.y) < 1e-9);
    assert.equal(zoomed.scale, v.scale * 2);
    assert.equal(zoomAt(v, 1e6, 0, 0).scale, 40, 'zoom is bounded');
    assert.equal(zoomAt(v, 1e-6, 0, 0).scale, 0.05);
  });

  test('a click is stored in whole image pixels: the centre of the view is the centre of the image', () => {
    const v = fitView(box, image);
    assert.deepEqual(placementAt(v, { x: 400, y: 300 }, image), { x: 256, y: 128 });
    // At 4x zoom about the top-left corner of the image, one image pixel is 4 canvas pixels.
    const zoomed = { scale: 4, x: 10, y: 20 };
    assert.deepEqual(placementAt(zoomed, { x: 10 + 4 * 100 + 1, y: 20 + 4 * 50 + 1 }, image), { x: 100, y: 50 });
  });

  test('a click beside the image places nothing; the last pixel row and column are reachable but not beyond', () => {
    const v = { scale: 1, x: 0, y: 0 };
    assert.equal(placementAt(v, { x: -0.1, y: 10 }, image), null);
    assert.equal(placementAt(v, { x: 10, y: 256 }, image), null);
    assert.deepEqual(placementAt(v, { x: 511.9, y: 255.9 }, image), { x: 511, y: 255 }, 'rounded, yet inside the image');
  });

  test('keyboard placement: arrows pan the image under the centre, Enter places there', () => {
    let v = fitView(box, image);
    const start = placementAtCentre(v, box, image)!;
    const right = arrowPan('ArrowRight')!;
    v = panBy(v, right[0], right[1]);
    const moved = placementAtCentre(v, box, image)!;
    assert.ok(moved.x > start.x, 'ArrowRight brings the right part of the image to the centre');
    assert.equal(moved.y, start.y);
    assert.equal(arrowPan('Enter'), null);
    // Panned far off: the centre is beside the image, so nothing is placed.
    assert.equal(placementAtCentre(panBy(v, 5000, 0), box, image), null);
  });
});
