import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  binaryAuc,
  binaryMetrics,
  confusionMatrix,
  expectedCalibrationError,
  perClassMetrics,
  percentile,
  reliabilityBins,
  rocCurve,
} from './metrics.js';
import { missedTargets, regressions, type EvalReport } from './evaluate.js';

const close = (actual: number, expected: number, eps = 1e-9) =>
  assert.ok(Math.abs(actual - expected) < eps, `${actual} is not ${expected}`);

describe('binaryAuc', () => {
  it('counts the share of correctly ordered positive/negative pairs', () => {
    close(binaryAuc([0.1, 0.4, 0.35, 0.8], [false, false, true, true]), 0.75);
    close(binaryAuc([0.1, 0.2, 0.3], [false, true, true]), 1);
    close(binaryAuc([0.3, 0.2, 0.1], [false, true, true]), 0);
  });

  it('gives a tied positive/negative pair one half', () => {
    // pairs: 0.5+ vs 0.2- = 1, 0.5+ vs 0.5- = 0.5, 0.9+ vs both = 2 -> 3.5 / 4
    close(binaryAuc([0.2, 0.5, 0.5, 0.9], [false, true, false, true]), 0.875);
    close(binaryAuc([0.5, 0.5, 0.5, 0.5], [true, false, true, false]), 0.5);
  });

  it('is undefined with only one class', () => {
    assert.ok(Number.isNaN(binaryAuc([0.1, 0.9], [true, true])));
  });
});

describe('expectedCalibrationError', () => {
  it('is zero when confidence matches accuracy in every bin', () => {
    const conf = new Array<number>(10).fill(0.8);
    const correct = conf.map((_, i) => i < 8);
    close(expectedCalibrationError(conf, correct), 0);
  });

  it('weights each bin gap by its share of the images', () => {
    // bin (0.867, 0.933]: acc 0.5 vs conf 0.9 -> 0.4 x 1/2; bin (0.533, 0.6]: acc 1 vs 0.6 -> 0.4 x 1/2
    close(expectedCalibrationError([0.9, 0.9, 0.6, 0.6], [true, false, true, true]), 0.4);
  });

  it('keeps an overconfident model visible', () => {
    close(expectedCalibrationError([1, 1, 1, 1], [true, false, false, false]), 0.75);
  });
});

describe('confusionMatrix and perClassMetrics', () => {
  const truth = [0, 0, 1, 2, 2];
  const predicted = [0, 1, 1, 2, -1];

  it('counts truth by row and prediction by column, leaving refusals out', () => {
    assert.deepEqual(confusionMatrix(truth, predicted, 3), [
      [1, 1, 0],
      [0, 1, 0],
      [0, 0, 1],
    ]);
  });

  it('counts a refused image as a miss for recall, not against precision', () => {
    const m = perClassMetrics(confusionMatrix(truth, predicted, 3), [0, 0, 1]);
    close(m[0]!.precision, 1);
    close(m[0]!.recall, 0.5);
    close(m[1]!.precision, 0.5);
    close(m[1]!.recall, 1);
    close(m[1]!.f1, 2 / 3);
    close(m[2]!.precision, 1);
    close(m[2]!.recall, 0.5);
    assert.equal(m[2]!.support, 2);
  });
});

describe('percentile', () => {
  it('interpolates linearly like numpy', () => {
    close(percentile([4, 1, 3, 2], 50), 2.5);
    close(percentile([1, 2, 3, 4], 95), 3.85);
    close(percentile([7], 95), 7);
  });
});

describe('binaryMetrics', () => {
  it('treats a refusal as neither a true positive nor a true negative', () => {
    const m = binaryMetrics([true, true, false, false], [true, null, false, true], [0.9, null, 0.1, 0.6]);
    close(m.accuracy, 0.5);
    close(m.sensitivity, 0.5);
    close(m.specificity, 0.5);
    close(m.auc, 1);
  });
});

describe('curves for the model cards', () => {
  it('ROC runs from (0,0) to (1,1), one point per distinct score', () => {
    const roc = rocCurve([0.9, 0.8, 0.8, 0.3], [true, true, false, false]);
    assert.deepEqual(roc, [
      [0, 0],
      [0, 0.5],
      [0.5, 1],
      [1, 1],
    ]);
    assert.deepEqual(rocCurve([0.5], [true]), [], 'no curve without both classes');
  });

  it('reliability bins hold the mean confidence and accuracy behind the ECE', () => {
    const bins = reliabilityBins([0.95, 0.97, 0.55], [true, false, true], 10);
    assert.equal(bins.length, 10);
    assert.deepEqual([bins[9]!.n, bins[9]!.accuracy], [2, 0.5]);
    assert.ok(Math.abs(bins[9]!.confidence! - 0.96) < 1e-12);
    assert.deepEqual([bins[5]!.n, bins[5]!.accuracy], [1, 1]);
    assert.equal(bins[0]!.confidence, null);
  });
});

describe('the regression gate and the external targets', () => {
  const report = (over: Partial<EvalReport>): EvalReport =>
    ({
      accuracy: 0.9,
      macroF1: 0.9,
      auc: 0.95,
      ece: 0.03,
      falseRefusalRate: 0.01,
      refusalRate: 1,
      binary: { accuracy: 0.93, sensitivity: 0.96, specificity: 0.9, auc: 0.98 },
      ...over,
    }) as EvalReport;

  it('fails a figure below the card, and a worse ECE, beyond the tolerance only', () => {
    const card = report({});
    assert.deepEqual(regressions(report({ accuracy: 0.899 }), card), [], 'within 0.002');
    assert.deepEqual(regressions(report({ accuracy: 0.89, ece: 0.04 }), card), ['accuracy: 0.89 (card: 0.9)', 'ECE: 0.04 (card: 0.03)']);
    assert.deepEqual(regressions(report({ binary: { accuracy: 0.93, sensitivity: 0.9, specificity: 0.95, auc: 0.98 } }), card), [
      'pneumonia-vs-normal sensitivity: 0.9 (card: 0.96)',
    ]);
  });

  it('external targets ask for specificity >= 0.90 and false refusals <= 1%', () => {
    assert.deepEqual(missedTargets(report({ ece: 0.04 }), 'chest-xray', 'external'), ['binary accuracy 0.93 (target >= 0.95)']);
    const missed = missedTargets(report({ binary: { accuracy: 0.96, sensitivity: 0.99, specificity: 0.4, auc: 0.99 }, falseRefusalRate: 0.02 }), 'chest-xray', 'external');
    assert.deepEqual(missed, ['binary specificity 0.4 (target >= 0.9)', 'false refusal rate 0.02 (target <= 0.01)']);
  });
});
