// The viewer's window/level (web/src/lib/window-level.ts) under node: what a radiologist sees
// of a DICOM's original values for a given window, and what a drag on the image does to it.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { applyWindow, dragWindow, windowLut, windowValue } from '../../web/src/lib/window-level.js';

describe('window/level', () => {
  test('values below the window are black, above it white, the centre mid-grey (DICOM linear VOI)', () => {
    const win = { center: 40, width: 400 }; // a CT soft-tissue window, in Hounsfield units
    assert.equal(windowValue(-1000, win), 0, 'air');
    assert.equal(windowValue(-160, win), 0, 'the lower edge');
    assert.equal(windowValue(1000, win), 255, 'bone');
    assert.ok(Math.abs(windowValue(40, win) - 127.5) < 1, `centre: ${windowValue(40, win)}`);
    assert.ok(windowValue(0, win) < windowValue(80, win), 'monotonic inside the window');
  });

  test('MONOCHROME1 inverts: high values are dark', () => {
    const win = { center: 2048, width: 4096 };
    assert.equal(windowValue(0, win, true), 255);
    assert.equal(windowValue(4095, win, true), 0);
  });

  test('a window of width 1 is a threshold, never a division by zero', () => {
    const win = { center: 100, width: 1 };
    assert.equal(windowValue(99, win), 0);
    assert.equal(windowValue(101, win), 255);
    for (const v of [99, 99.5, 100, 100.5, 101]) assert.ok(Number.isFinite(windowValue(v, win)));
  });

  test('the lookup table covers min..max and equals the formula at every entry', () => {
    const win = { center: 300, width: 800 };
    const lut = windowLut(-1024, 3071, win);
    assert.equal(lut.length, 4096);
    for (const v of [-1024, -100, 0, 300, 699, 700, 3071]) {
      assert.equal(lut[v + 1024], Math.round(Math.min(255, Math.max(0, windowValue(v, win)))), `value ${v}`);
    }
  });

  test('int16 pixels go through the table into opaque grey RGBA; float pixels give the same picture', () => {
    const values = [-1024, -200, 0, 40, 240, 3000];
    const win = { center: 40, width: 400 };
    const asInt = new Uint8ClampedArray(values.length * 4);
    const asFloat = new Uint8ClampedArray(values.length * 4);
    applyWindow({ data: Int16Array.from(values), min: -1024, max: 3000, invert: false }, win, asInt);
    applyWindow({ data: Float32Array.from(values), min: -1024, max: 3000, invert: false }, win, asFloat);
    assert.deepEqual([...asInt], [...asFloat]);
    const greys = values.map((_, i) => asInt[i * 4]);
    assert.deepEqual(greys.slice(0, 2), [0, 0]);
    assert.equal(greys.at(-1), 255);
    for (let i = 0; i < values.length; i++) {
      assert.equal(asInt[i * 4 + 1], asInt[i * 4]);
      assert.equal(asInt[i * 4 + 2], asInt[i * 4]);
      assert.equal(asInt[i * 4 + 3], 255, 'opaque');
    }
  });

  test('a 12-bit range is not squeezed into 8 bits first: two values 1 apart in a narrow window differ', () => {
    const out = new Uint8ClampedArray(8);
    applyWindow({ data: Int16Array.from([2000, 2001]), min: 0, max: 4095, invert: false }, { center: 2000, width: 4 }, out);
    assert.ok(out[4]! - out[0]! >= 60, `${out[0]} vs ${out[4]}`);
  });

  test('an output buffer too small for the image is refused', () => {
    assert.throws(() => applyWindow({ data: new Int16Array(4), min: 0, max: 1, invert: false }, { center: 0, width: 2 }, new Uint8ClampedArray(8)), RangeError);
  });

  test('dragging right widens the window, dragging up raises the centre; 300 px span the range', () => {
    const start = { center: 1000, width: 500 };
    assert.deepEqual(dragWindow(start, 300, 0, 4000), { center: 1000, width: 4500 });
    assert.deepEqual(dragWindow(start, 0, -150, 4000), { center: 3000, width: 500 });
    assert.equal(dragWindow(start, -3000, 0, 4000).width, 1, 'never narrower than 1');
  });
});
