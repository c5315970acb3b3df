import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Value } from '@sinclair/typebox/value';
import { findingSummary, FindingSchema, listInWords, ReviewedFindingSchema, scanTypeOfDicom, scanTypeSpec } from './index.js';

describe('scan-type table', () => {
  test('brain MRI: the most probable class decides', () => {
    const d = scanTypeSpec('brain-mri').decide({ glioma: 0.1, meningioma: 0.7, notumor: 0.15, pituitary: 0.05 }, null);
    assert.deepEqual(d, { present: true, kind: 'meningioma', confidence: 0.7, explainedLabel: 'meningioma' });
    const none = scanTypeSpec('brain-mri').decide({ glioma: 0.1, meningioma: 0.1, notumor: 0.75, pituitary: 0.05 }, null);
    assert.equal(none.present, false);
    assert.equal(none.kind, null);
  });

  test('chest X-ray: pneumonia when bacterial + viral reaches the threshold, even if normal is the top class', () => {
    const d = scanTypeSpec('chest-xray').decide({ normal: 0.55, bacterial: 0.2, viral: 0.25 }, 0.4);
    assert.equal(d.present, true);
    assert.equal(d.kind, 'viral');
    assert.ok(Math.abs(d.confidence - 0.45) < 1e-9);
    assert.deepEqual(d.extra, { decisionThreshold: 0.4 });
    const below = scanTypeSpec('chest-xray').decide({ normal: 0.7, bacterial: 0.2, viral: 0.1 }, 0.4);
    assert.deepEqual([below.present, below.kind, below.explainedLabel], [false, null, 'normal']);
  });

  test('messages list the scan types in words, whatever their number', () => {
    assert.equal(listInWords(['a brain MRI'], 'or'), 'a brain MRI');
    assert.equal(listInWords(['a brain MRI', 'a chest X-ray'], 'or'), 'a brain MRI or a chest X-ray');
    assert.equal(listInWords(['a', 'b', 'c'], 'and'), 'a, b and c');
  });

  test('summaries read as a sentence', () => {
    assert.equal(findingSummary({ hasTumor: true, tumorType: 'glioma' }), 'Tumour detected: glioma');
    assert.equal(findingSummary({ hasTumor: true, tumorType: null }), 'Tumour detected (type not specified)');
    assert.equal(findingSummary({ hasPneumonia: false }), 'No pneumonia detected');
    assert.equal(findingSummary({ additionalNotes: 'x' }), 'No structured finding: see the notes');
  });

  test('DICOM modality and body part pick the type; a missing body part matches', () => {
    assert.equal(scanTypeOfDicom('MR', 'HEAD'), 'brain-mri');
    assert.equal(scanTypeOfDicom(' mr ', undefined), 'brain-mri');
    assert.equal(scanTypeOfDicom('DX', 'CHEST'), 'chest-xray');
    assert.equal(scanTypeOfDicom('CR', ''), 'chest-xray');
    assert.equal(scanTypeOfDicom('MR', 'KNEE'), null);
    assert.equal(scanTypeOfDicom('CT', 'HEAD'), null);
    assert.equal(scanTypeOfDicom(undefined, 'CHEST'), null);
  });

  test('the finding schema accepts a model finding and refuses one of the wrong shape', () => {
    const finding = {
      scanType: 'chest-xray',
      hasPneumonia: true,
      pneumoniaType: 'bacterial',
      confidence: 0.9,
      probabilities: { normal: 0.1, bacterial: 0.8, viral: 0.1 },
      decisionThreshold: 0.35,
      operatingPoint: 'screening',
      calibration: 'model',
      model: { id: 'chest-xray', version: '1.0.0' },
    };
    assert.ok(Value.Check(FindingSchema, finding));
    assert.ok(!Value.Check(FindingSchema, { ...finding, pneumoniaType: 'glioma' }));
    assert.ok(Value.Check(ReviewedFindingSchema, { hasTumor: false, tumorType: null, additionalNotes: 'ok' }));
    assert.ok(!Value.Check(ReviewedFindingSchema, { diagnosis: 'x' }));
  });
});
