/**
 * Local validation before go-live: a site's own labelled images (one folder per label, as for
 * npm run eval) through the served pipeline. Reports the model's metrics there as shipped, then
 * fits this site's temperature and operating-point thresholds and writes them as a site
 * calibration into the server's data folder (`$DATA_DIR/calibration/<id>.site.json`, or
 * CALIBRATION_DIR), which the server uses from its next start and reports as
 * `calibration: "site"` in GET /api/ml/models.
 *
 *   npm run calibrate -- --model chest-xray --data <dir> [--models-dir models] [--out <calibration dir>] [--write | --dry-run]
 *
 * Writing is the default; `--write` says so explicitly (as scripts/calibrate-model.ts asks for it).
 *
 * Refuses (exit 1) to write one from fewer than 100 pneumonia and 100 normal images.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { loadConfig } from '../platform/config.js';
import {
  calibrate,
  labelledImages,
  metricsAt,
  POINT_CRITERIA,
  POINT_DESCRIPTIONS,
  positiveScores,
  scoreImages,
  tooFewImages,
  type PointName,
} from './calibrate.js';
import { siteCalibrationPath, type SiteCalibration } from './calibration.js';
import { ModelRegistry } from './registry.js';

const USAGE = 'usage: npm run calibrate -- --model chest-xray --data <dir with normal/ bacterial/ viral/> [--out <dir>] [--write | --dry-run]';

const OPTIONS = {
  model: { type: 'string' },
  data: { type: 'string' },
  'models-dir': { type: 'string' },
  out: { type: 'string' },
  write: { type: 'boolean', default: false },
  'dry-run': { type: 'boolean', default: false },
} as const;

async function main(): Promise<number> {
  let values: ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];
  try {
    ({ values } = parseArgs({ options: OPTIONS }));
  } catch (err) {
    // An unknown or malformed option: say which, and how it is used (not a stack trace).
    console.error(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (!values.model || !values.data || (values.write && values['dry-run'])) {
    console.error(USAGE);
    return 2;
  }
  const config = loadConfig();
  const outDir = path.resolve(values.out ?? config.calibrationDir);
  const dataDir = path.resolve(values.data);
  const registry = await ModelRegistry.load({ dir: values['models-dir'] ?? config.modelsDir, only: [values.model] });
  try {
    const model = registry.get(values.model);
    const { manifest } = model;
    const positiveLabels = manifest.decision.positiveLabels ?? [];
    if (positiveLabels.length === 0) {
      console.error(`${model.id} has no operating points to calibrate (its rule is the most probable class); only chest-xray has them`);
      return 2;
    }
    const images = await labelledImages(dataDir, manifest.labels);
    const counts = Object.fromEntries(manifest.labels.map((l, c) => [l, images.filter((i) => i.truth === c).length]));
    console.log(`${model.id} ${manifest.version} on ${dataDir}: ${Object.entries(counts).map(([l, n]) => `${n} ${l}`).join(', ')}`);
    const few = tooFewImages(counts, positiveLabels);
    if (few) {
      console.error(few);
      return 1;
    }
    const rows = await scoreImages(model, images, (done, total) => {
      if (done % 100 === 0 || done === total) process.stderr.write(`  ${done}/${total}\n`);
    });
    const positive = positiveLabels.map((l) => manifest.labels.indexOf(l));
    const isPos = rows.map((r) => positive.includes(r.truth));

    console.log(`\nAs shipped (temperature ${model.calibration.temperature}, ${rows.filter((r) => !r.logits).length} refused):`);
    const shipped = positiveScores(rows, model.calibration.temperature, positive);
    for (const [name, point] of Object.entries(model.calibration.operatingPoints)) {
      if (point.threshold === undefined) continue;
      const m = metricsAt(shipped, isPos, point.threshold);
      console.log(`  ${name.padEnd(10)} P >= ${point.threshold}: sensitivity ${m.sensitivity}, specificity ${m.specificity}, accuracy ${m.accuracy}`);
    }

    const s = calibrate(model, rows);
    console.log(`\nFitted here: temperature ${s.temperature} (log loss ${s.logLoss.before} -> ${s.logLoss.after}), AUC ${s.auc}, ECE ${s.ece}`);
    const operatingPoints: SiteCalibration['operatingPoints'] = {};
    for (const name of Object.keys(POINT_CRITERIA) as PointName[]) {
      const p = s.points[name];
      const cf = s.crossFitted[name];
      console.log(
        `  ${name.padEnd(10)} P >= ${p.threshold}: sensitivity ${p.sensitivity}, specificity ${p.specificity} ` +
          `(chosen on half the images, measured on the other: ${cf.sensitivity} / ${cf.specificity})`,
      );
      operatingPoints[name] = {
        threshold: p.threshold,
        description: POINT_DESCRIPTIONS[name],
        chosenOn: `this site's images (${rows.length}), ${POINT_CRITERIA[name]}`,
        site: { sensitivity: p.sensitivity, specificity: p.specificity, accuracy: p.accuracy, n: p.n },
      };
    }
    const digest = createHash('sha256');
    for (const img of images) digest.update(`${path.relative(dataDir, img.file)}\n`);
    const calibration: SiteCalibration = {
      model: { id: model.id, version: manifest.version, sha256: manifest.sha256 },
      temperature: s.temperature,
      operatingPoints,
      data: { dir: dataDir, counts, sha256: digest.digest('hex') },
      command: `npm run calibrate -- --model ${model.id} --data ${dataDir}`,
      date: new Date().toISOString(),
    };
    if (values['dry-run']) {
      console.log('\n(dry run: nothing written)');
      return 0;
    }
    mkdirSync(outDir, { recursive: true });
    const file = siteCalibrationPath(outDir, model.id);
    writeFileSync(file, JSON.stringify(calibration, null, 2) + '\n');
    console.log(`\nwrote ${file}; the server uses it from its next start (GET /api/ml/models then shows calibration "site").`);
    console.log(`It applies to this model file only (${manifest.version}, sha256 ${manifest.sha256.slice(0, 12)}...): recalibrate after a model update.`);
    return 0;
  } finally {
    await registry.close();
  }
}

process.exitCode = await main();
