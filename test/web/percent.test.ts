// How the web app writes a model's probability (web/src/lib/percent.ts): never as a certainty.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { percent } from '../../web/src/lib/percent.js';

test('a probability that would round to 100% or 0% is shown as over 99.9% or under 0.1%, not as a certainty', () => {
  assert.equal(percent(0.99996, 1), '> 99.9%');
  assert.equal(percent(1, 1), '> 99.9%');
  assert.equal(percent(0.0004, 1), '< 0.1%');
  assert.equal(percent(0, 1), '< 0.1%');
  assert.equal(percent(0.9994, 1), '99.9%');
  assert.equal(percent(0.0006, 1), '0.1%');
  assert.equal(percent(0.8734, 1), '87.3%');
  // Whole percentages, as in a sentence's summary.
  assert.equal(percent(0.996), '> 99%');
  assert.equal(percent(0.004), '< 1%');
  assert.equal(percent(0.517), '52%');
  assert.equal(percent(null), '—');
});
