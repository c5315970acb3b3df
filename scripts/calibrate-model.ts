/**
 * Post-training calibration of the chest model: fits the temperature and chooses the named
 * operating points on `external/` (the dataset's official test split: other children, selected
 * later, never trained on), measures every point on the validation images training held out
 * (reproduced by ml/validation_split.py) and on external/, and writes it all into the manifest.
 *
 *   npx tsx scripts/calibrate-model.ts --model chest-xray [--data ../shared/datasets/chest-xray] [--models-dir models] [--write]
 *                                      [--keep-temperature] [--keep-screening] [--with-validation] [--default <point>]
 *
 * --with-validation fits the temperature on validation and external/ together and requires the
 * sensitivity floors (screening, general) on both sets, so one threshold holds for the training
 * pool's population and for external/'s (chest 2.0.0: external/ alone would choose points that
 * cost in-pool sensitivity). --default names the manifest's default point (screening unless given).
 *
 * --keep-temperature keeps the training temperature (fitted on validation) instead of fitting
 * one on external/; --keep-screening keeps the manifest's current screening threshold (chosen on
 * validation by ml/train.py) and only adds the points chosen on external/. Used for chest 1.0.0,
 * whose external-chosen screening threshold would cost in-pool test sensitivity (see
 * docs/models/README.md).
 *
 * Without --write it only prints. external/ is used for choosing the temperature and the
 * thresholds and for reporting, never for training; the figures on it at points chosen on it are
 * optimistic, so the manifest also carries a cross-fitted estimate (choose on one half of the
 * patients, measure on the other, both ways).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import {
  calibrate,
  choosePoints,
  labelledImages,
  metricsAt,
  POINT_CRITERIA,
  POINT_DESCRIPTIONS,
  positiveScores,
  scoreImages,
  type PointName,
} from '../src/ml/calibrate.js';
import { calibratedProbabilities } from '../src/ml/inference.js';
import { expectedCalibrationError } from '../src/ml/metrics.js';
import { ModelRegistry } from '../src/ml/registry.js';
import { scanTypeSpec } from '../src/scan-types/index.js';

/** The manifest file as JSON, edited in place: the sections rewritten here, and the rest copied through untouched. */
type ManifestJson = Record<string, unknown> & {
  decision?: object;
  calibration?: Record<string, unknown> & { trainingTemperature?: number };
  metrics?: object;
};

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'chest-xray' },
    data: { type: 'string' },
    'models-dir': { type: 'string', default: 'models' },
    'val-fraction': { type: 'string', default: '0.12' },
    write: { type: 'boolean', default: false },
    'keep-temperature': { type: 'boolean', default: false },
    'keep-screening': { type: 'boolean', default: false },
    'with-validation': { type: 'boolean', default: false },
    default: { type: 'string', default: 'screening' },
  },
});
if (!(values.default in POINT_CRITERIA)) {
  console.error(`--default ${values.default}: not a point (${Object.keys(POINT_CRITERIA).join(', ')})`);
  process.exit(2);
}
const defaultPoint = values.default as PointName;
const withValidation = values['with-validation'];
const id = values.model;
const modelsDir = path.resolve(values['models-dir']);
const dataDir = path.resolve(values.data ?? `../shared/datasets/${id}`);
const manifestPath = path.join(modelsDir, `${id}.json`);

const registry = await ModelRegistry.load({ dir: modelsDir, only: [id] });
const model = registry.get(id);
const { manifest } = model;
const labels = manifest.labels;
const positive = (manifest.decision.positiveLabels ?? []).map((l) => labels.indexOf(l));
// A model without positive labels (brain) has one point, its argmax rule: only measured here.
const argmaxOnly = positive.length === 0;
const progress = (what: string) => (done: number, total: number) => {
  if (done === total || done % 100 === 0) process.stderr.write(`  ${what}: ${done}/${total}\n`);
};

// Validation: the patients train.py held out, with its seed and fraction.
const recipe = (manifest.training as { recipe?: { seed?: number } } | undefined)?.recipe;
const seed = recipe?.seed ?? 20261125;
const split = execFileSync(
  '/usr/bin/python3',
  ['ml/validation_split.py', '--task', manifest.task, '--data', dataDir, '--seed', String(seed), '--val-fraction', values['val-fraction']],
  { encoding: 'utf8' },
)
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l) as { path: string; class: string; group: string });
const expectedVal = (manifest.training as { data?: { validationCount?: number } } | undefined)?.data?.validationCount;
if (expectedVal !== undefined && expectedVal !== split.length) {
  console.error(`validation split has ${split.length} images, the manifest says ${expectedVal}: pass the run's --val-fraction`);
  process.exit(2);
}
const validation = await scoreImages(
  model,
  split.map((s) => ({ file: s.path, truth: labels.indexOf(s.class), group: s.group })),
  progress('validation'),
);

if (argmaxOnly) {
  // Finding present (any label but the negative one) vs absent, on validation, refusals counted.
  const negative = labels.indexOf(scanTypeSpec(manifest.task).negativeLabel);
  const predictedPresent = validation.map((r) =>
    r.logits ? r.logits.indexOf(Math.max(...r.logits)) !== negative : null,
  );
  const present = validation.map((r) => r.truth !== negative);
  // No threshold: the argmax answer is the prediction (as a score of 1 or 0 for metricsAt).
  const val = metricsAt(
    predictedPresent.map((p) => (p === null ? null : p ? 1 : 0)),
    present,
    0.5,
  );
  const correct = validation.filter((r) => r.logits && r.logits.indexOf(Math.max(...r.logits)) === r.truth).length;
  const point = {
    rule: 'argmax',
    description: 'the most probable class',
    chosenOn: 'fixed rule (no threshold)',
    validation: {
      sensitivity: val.sensitivity,
      specificity: val.specificity,
      accuracy: val.accuracy,
      n: val.n,
      refused: val.refused,
      accuracy4Class: Math.round((correct / validation.length) * 10_000) / 10_000,
    },
  };
  console.log(
    `${id} ${manifest.version}: argmax on validation (${validation.length}): finding present vs absent sensitivity ${val.sensitivity}, ` +
      `specificity ${val.specificity}; ${labels.length}-class accuracy ${point.validation.accuracy4Class} (refusals counted)`,
  );
  if (values.write) {
    const raw = JSON.parse(readFileSync(manifestPath, 'utf8')) as ManifestJson;
    raw.decision = { ...raw.decision, defaultOperatingPoint: 'argmax', operatingPoints: { argmax: point } };
    raw.calibrationCommand = `npx tsx scripts/calibrate-model.ts --model ${id} --data ${path.relative(process.cwd(), dataDir)} --write`;
    writeFileSync(manifestPath, JSON.stringify(raw, null, 2) + '\n');
    console.log(`wrote ${manifestPath}`);
  }
  await registry.close();
  process.exit(0);
}

// external/: grouped by patient (EXTERNAL.tsv) so cross-fitting never splits a child.
const patients = new Map<string, string>();
for (const line of readFileSync(path.join(dataDir, 'EXTERNAL.tsv'), 'utf8').trim().split('\n').slice(1)) {
  const [file, , , patient] = line.split('\t');
  if (file && patient) patients.set(path.join(dataDir, file), patient);
}
const external = await scoreImages(
  model,
  await labelledImages(path.join(dataDir, 'external'), labels, (file) => patients.get(file) ?? path.basename(file)),
  progress('external'),
);

const summary = calibrate(model, external, {
  ...(values['keep-temperature'] ? { temperature: model.calibration.temperature } : {}),
  ...(withValidation ? { alsoOn: validation } : {}),
});
const keptScreening = values['keep-screening'] ? model.calibration.operatingPoints.screening : undefined;
if (values['keep-screening'] && keptScreening?.threshold === undefined) {
  console.error('--keep-screening: the manifest has no screening threshold to keep');
  process.exit(2);
}
const isPos = (rows: typeof validation) => rows.map((r) => positive.includes(r.truth));
const valScores = positiveScores(validation, summary.temperature, positive);
const fmt = (v: number) => v.toFixed(3);
const previousTemperature = manifest.calibration.temperature;
const eceAt = (rows: typeof validation, temperature: number) => {
  const probs = rows.flatMap((r) => (r.logits ? [{ p: calibratedProbabilities(r.logits, temperature), truth: r.truth }] : []));
  const top = probs.map(({ p }) => Math.max(...p));
  return expectedCalibrationError(top, probs.map(({ p, truth }, i) => p.indexOf(top[i]!) === truth), 15);
};
console.log(`${id} ${manifest.version}: temperature ${previousTemperature} -> ${summary.temperature} ` +
  `(fitted on ${withValidation ? 'validation + external/' : 'external/'}${values['keep-temperature'] ? ', kept' : ''}; ` +
  `external log loss ${summary.logLoss.before} -> ${summary.logLoss.after}, ECE ${summary.ece}, AUC ${summary.auc}; ` +
  `validation ECE ${fmt(eceAt(validation, previousTemperature))} -> ${fmt(eceAt(validation, summary.temperature))})`);
console.log('point      threshold  validation sens/spec  external sens/spec  external cross-fitted sens/spec');
const operatingPoints: Record<string, unknown> = {};
const extScores = positiveScores(external, summary.temperature, positive);
for (const name of Object.keys(POINT_CRITERIA) as PointName[]) {
  const kept = name === 'screening' && keptScreening ? keptScreening.threshold! : undefined;
  const t = kept ?? summary.thresholds[name];
  const val = metricsAt(valScores, isPos(validation), t);
  // A kept threshold was not chosen on external/, so its external figures need no cross-fitting.
  const ext = kept === undefined ? summary.points[name] : metricsAt(extScores, isPos(external), t);
  const cf = kept === undefined ? summary.crossFitted[name] : ext;
  console.log(
    `${name.padEnd(10)} ${t.toFixed(4).padStart(9)}  ${fmt(val.sensitivity)} / ${fmt(val.specificity)}         ` +
      `${fmt(ext.sensitivity)} / ${fmt(ext.specificity)}       ${fmt(cf.sensitivity)} / ${fmt(cf.specificity)}`,
  );
  operatingPoints[name] = {
    threshold: t,
    description: POINT_DESCRIPTIONS[name],
    chosenOn:
      kept === undefined
        ? `${withValidation && name !== 'balanced' ? `validation (${validation.length} images) and external/ (${external.length}), on each: ` : `external/ (${external.length} images), `}` +
          `${POINT_CRITERIA[name]}, at temperature ${summary.temperature}`
        : (keptScreening!.chosenOn ?? 'validation (ml/train.py)'),
    validation: val,
    external: ext,
    externalCrossFitted: cf,
  };
}

/** Which set bound each sensitivity floor: the card must say whether external/ moved the threshold at all. */
function floorsSetBy(): string {
  const alone = (rows: typeof validation) => choosePoints(positiveScores(rows, summary.temperature, positive), isPos(rows));
  const [onVal, onExt] = [alone(validation), alone(external)];
  return (['screening', 'general'] as const)
    .map((name) =>
      onVal[name] <= onExt[name]
        ? `${name} set by validation (external/ alone would allow ${onExt[name]})`
        : `${name} set by external/ (validation alone would allow ${onVal[name]})`,
    )
    .join(', ');
}

if (values.write) {
  const raw = JSON.parse(readFileSync(manifestPath, 'utf8')) as ManifestJson;
  const trainingTemperature = raw.calibration?.trainingTemperature ?? previousTemperature;
  raw.calibration = values['keep-temperature']
    ? { ...raw.calibration, trainingTemperature, externalCheck: 'kept; external/ log loss and ECE in metrics.external' }
    : {
        method: `temperature scaling by log loss on ${withValidation ? 'validation and external/ together' : 'external/'} after training (scripts/calibrate-model.ts)`,
        temperature: summary.temperature,
        trainingTemperature,
        trainingMethod: 'temperature scaling on validation (ml/train.py)',
      };
  raw.decision = {
    positiveLabels: manifest.decision.positiveLabels,
    // Kept for readers of 1.0 manifests: the default point's threshold.
    positiveThreshold: (operatingPoints[defaultPoint] as { threshold: number }).threshold,
    defaultOperatingPoint: defaultPoint,
    operatingPoints,
  };
  raw.externalUse =
    `external/ (${external.length} images, ${Object.entries(summary.counts).map(([l, n]) => `${n} ${l}`).join(', ')}; ` +
    `the dataset's official test split, other children selected later) was used after training only: ` +
    (values['keep-temperature']
      ? 'not for the temperature (the training one, fitted on validation, was kept), '
      : withValidation
        ? `to fit the temperature (log loss over the images the model answered in validation and external/ together, ` +
          `${validation.length - validation.filter((r) => !r.logits).length} + ${external.length - summary.refused}), `
        : `to fit the temperature (log loss over the ${external.length - summary.refused} images the model answered), `) +
    (keptScreening
      ? 'to choose the balanced threshold (screening kept as chosen on validation), '
      : withValidation
        ? `to choose the thresholds (screening and general: the highest threshold keeping sensitivity >= 0.98 and >= 0.95 ` +
          `on validation and on external/ alike, the lower of the two, ${floorsSetBy()}; balanced: the largest Youden index on external/), `
        : 'to choose the operating-point thresholds, ') +
    `and to report. It was never trained on or used to pick an epoch. Figures on external/ ` +
    `at points chosen there are optimistic; externalCrossFitted chooses on half the patients and measures on the other half.`;
  raw.metrics = {
    ...raw.metrics,
    external: {
      n: external.length,
      refused: summary.refused,
      counts: summary.counts,
      binaryAuc: summary.auc,
      ece: summary.ece,
      logLoss: summary.logLoss,
    },
  };
  raw.calibratedAt = new Date().toISOString();
  raw.calibrationCommand =
    `npx tsx scripts/calibrate-model.ts --model ${id} --data ${path.relative(process.cwd(), dataDir)} --write` +
    (values['keep-temperature'] ? ' --keep-temperature' : '') +
    (values['keep-screening'] ? ' --keep-screening' : '') +
    (withValidation ? ' --with-validation' : '') +
    (defaultPoint !== 'screening' ? ` --default ${defaultPoint}` : '');
  writeFileSync(manifestPath, JSON.stringify(raw, null, 2) + '\n');
  console.log(`wrote ${manifestPath}`);
} else {
  console.log('(dry run: --write puts this into the manifest)');
}
await registry.close();
