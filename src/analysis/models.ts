/**
 * The model list for GET /api/ml/models, read from the manifests in MODELS_DIR that have their
 * ONNX file next to them (the API process does not load ONNX sessions to describe them).
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { CalibrationError, readSiteCalibration, resolveCalibration, siteCalibrationMismatch } from '../ml/calibration.js';
import { parseManifest } from '../ml/registry.js';

export interface ModelListOptions {
  /** Site calibrations (config.calibrationDir): a model calibrated here lists `calibration: "site"`. */
  calibrationDir?: string | null;
  /** Operating point per model id (CHEST_OPERATING_POINT). */
  operatingPoints?: Record<string, string>;
}

/** The manifests in `dir` that have their network beside them. */
async function installedManifests(dir: string) {
  let names: string[] = [];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.json') && !n.endsWith('.eval.json')).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const out = [];
  for (const name of names) {
    const file = path.join(dir, name);
    const m = parseManifest(JSON.parse(await readFile(file, 'utf8')), file);
    // A manifest without its network is not an installed model.
    if (existsSync(path.join(dir, m.file))) out.push(m);
  }
  return out;
}

/**
 * What an engineer must hear at start-up about the calibration each installed model will be
 * served with: a site calibration that is not used because it was fitted on another model file
 * (a model update: the site's local validation no longer applies) or lacks the point selected
 * (warn), or a point that no calibration defines, which fails every analysis with that model (error).
 */
export async function calibrationNotices(dir: string, options: ModelListOptions = {}) {
  const out: { level: 'warn' | 'error'; model: string; message: string }[] = [];
  for (const m of await installedManifests(dir)) {
    try {
      const mismatch = siteCalibrationMismatch(options.calibrationDir, m);
      if (mismatch) out.push({ level: 'warn', model: m.id, message: mismatch });
      const { siteIgnored } = resolveCalibration(m, readSiteCalibration(options.calibrationDir, m), options.operatingPoints?.[m.id]);
      if (siteIgnored) out.push({ level: 'warn', model: m.id, message: siteIgnored });
    } catch (err) {
      if (!(err instanceof CalibrationError)) throw err;
      out.push({ level: 'error', model: m.id, message: `${err.message}: analyses with ${m.id} will fail` });
    }
  }
  return out;
}

export async function listModelSummaries(dir: string, options: ModelListOptions = {}) {
  const out = [];
  for (const m of await installedManifests(dir)) {
    const calibration = resolveCalibration(m, readSiteCalibration(options.calibrationDir, m), options.operatingPoints?.[m.id]);
    out.push({
      id: m.id,
      name: m.name,
      version: m.version,
      task: m.task,
      labels: [...m.labels],
      metrics: (m.metrics?.test as Record<string, unknown> | undefined) ?? null,
      calibration: calibration.source,
      temperature: calibration.temperature,
      operatingPoint: calibration.operatingPoint,
      operatingPoints: Object.entries(calibration.operatingPoints).map(([name, p]) => ({
        name,
        threshold: p.threshold ?? null,
        description: p.description ?? null,
        chosenOn: p.chosenOn ?? null,
        validation: (p.validation as Record<string, unknown> | undefined) ?? null,
        external: (p.external as Record<string, unknown> | undefined) ?? null,
        site: (p as { site?: Record<string, unknown> }).site ?? null,
      })),
    });
  }
  return out;
}
