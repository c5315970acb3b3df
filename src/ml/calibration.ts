/**
 * Which temperature and decision threshold serving uses: the manifest's (chosen after training,
 * scripts/calibrate-model.ts) or a site's own (npm run calibrate, written to
 * `<DATA_DIR>/calibration/<id>.site.json`), at the operating point the deployment picked
 * (CHEST_OPERATING_POINT). A site calibration is bound to the model file by its sha256, so a
 * new model version never runs with thresholds fitted to the old one.
 */
import { scanTypeSpec } from '../scan-types/index.js';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import type { EffectiveCalibration, ModelManifest, OperatingPoint, PointMetrics } from './registry.js';

export class CalibrationError extends Error {
  override name = 'CalibrationError';
}

/** A site calibration as `npm run calibrate` writes it. */
export interface SiteCalibration {
  model: { id: string; version: string; sha256: string };
  temperature: number;
  operatingPoints: Record<string, { threshold: number; description?: string; chosenOn?: string; site?: PointMetrics }>;
  /** Images per label it was fitted on. */
  data: { dir: string; counts: Record<string, number>; sha256?: string };
  command?: string;
  date: string;
  /** Where it was read from (set on reading, not written). */
  file?: string;
}

export function siteCalibrationPath(dir: string, modelId: string): string {
  return path.join(dir, `${modelId}.site.json`);
}

/** The site calibration file for this model as written, whichever model file it was fitted on. */
function readSiteFile(dir: string | null | undefined, manifest: ModelManifest): { raw: SiteCalibration; file: string } | null {
  if (!dir) return null;
  const file = siteCalibrationPath(dir, manifest.id);
  if (!existsSync(file)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new CalibrationError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new CalibrationError(`${file}: not a site calibration (not an object)`);
  return { raw: raw as SiteCalibration, file };
}

/**
 * The site calibration for this model file, or null when there is none. One written for another
 * model file (another version, a retrained network) is ignored: its thresholds do not apply
 * (siteCalibrationMismatch says so at start).
 */
export function readSiteCalibration(dir: string | null | undefined, manifest: ModelManifest): SiteCalibration | null {
  const read = readSiteFile(dir, manifest);
  if (!read) return null;
  const { raw, file } = read;
  if (raw.model?.sha256 !== manifest.sha256) return null;
  if (!(typeof raw.temperature === 'number' && raw.temperature > 0)) throw new CalibrationError(`${file}: temperature must be > 0`);
  for (const [name, p] of Object.entries(raw.operatingPoints ?? {})) {
    if (!(typeof p.threshold === 'number' && p.threshold > 0 && p.threshold < 1)) {
      throw new CalibrationError(`${file}: operatingPoints.${name}.threshold must be between 0 and 1`);
    }
  }
  return { ...raw, file };
}

// Values read from a hand-editable file go into the log only when they look like what
// `npm run calibrate` writes, so nothing else in the file (or an edit) reaches the log.
const recorded = (v: unknown, pattern: RegExp): string | null => (typeof v === 'string' && pattern.test(v) ? v : null);
const shellWord = (s: string) => (/^[\w./:@%+=,-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`);

function describeModelFile(id: string | null, version: string | null, sha256: string | null): string {
  const name = [id, version].filter(Boolean).join(' ');
  const digest = sha256 ? `sha256 ${sha256.slice(0, 12)}...` : null;
  if (name && digest) return `${name} (${digest})`;
  return name || digest || 'a model file it does not record';
}

/**
 * Why the site calibration file for this model is not used because it was fitted on another
 * model file (chest-xray 2.0.0 -> 2.1.0): which one, against the one served, and the command
 * that refits it on the same images. Null when there is no file or it matches. Only the file's
 * path, its model, its date and the folder of images it names are said: never its contents
 * beyond that (image names, counts).
 */
export function siteCalibrationMismatch(dir: string | null | undefined, manifest: ModelManifest): string | null {
  const read = readSiteFile(dir, manifest);
  if (!read || read.raw.model?.sha256 === manifest.sha256) return null;
  const { raw, file } = read;
  const model = raw.model as Partial<SiteCalibration['model']> | undefined;
  const fittedOn = describeModelFile(
    recorded(model?.id, /^[\w.-]{1,64}$/),
    recorded(model?.version, /^[\w.+-]{1,64}$/),
    recorded(model?.sha256, /^[0-9a-f]{12,64}$/),
  );
  const served = describeModelFile(manifest.id, manifest.version, manifest.sha256);
  return (
    `site calibration ${file}${writtenOn(raw)} was fitted on ${fittedOn}, not on the model file served, ` +
    `${served}, so ${manifest.id} is served with the model's own calibration (temperature ${manifest.calibration.temperature}), ` +
    `not the site's: a temperature and thresholds fitted to one network's outputs do not apply to another's. ` +
    `Rerun the local validation with \`${refitCommand(manifest, raw)}\``
  );
}

/** ` (written <date>)`, when the file records a date as `npm run calibrate` writes it. */
function writtenOn(raw: Partial<SiteCalibration>): string {
  const date = recorded(raw.date, /^[\dTZ:.+-]{4,40}$/);
  return date ? ` (written ${date})` : '';
}

/**
 * The command that refits a site calibration on the images its file names: built from the data
 * folder, never the file's own `command`, which is free text (it may name more than the folder).
 */
function refitCommand(manifest: ModelManifest, raw: Partial<SiteCalibration>): string {
  const dataDir = recorded(raw.data?.dir, /^[^\x00-\x1f\x7f]{1,4096}$/);
  return `npm run calibrate -- --model ${manifest.id} --data ${dataDir ? shellWord(dataDir) : '<dir>'}`;
}

/** The manifest's named points; a 1.0.0 chest manifest's single threshold becomes `screening`. */
export function manifestOperatingPoints(manifest: ModelManifest): Record<string, OperatingPoint> {
  if (manifest.decision.operatingPoints) return manifest.decision.operatingPoints;
  if (!scanTypeSpec(manifest.task).needsPositiveThreshold) {
    return { argmax: { rule: 'argmax', description: 'the most probable class', chosenOn: 'fixed rule' } };
  }
  return {
    screening: {
      threshold: manifest.decision.positiveThreshold!,
      description: 'high sensitivity',
      chosenOn: 'validation (carved from train/): best accuracy with sensitivity >= 0.97',
    },
  };
}

export function defaultOperatingPoint(manifest: ModelManifest, points = manifestOperatingPoints(manifest)): string {
  const named = manifest.decision.defaultOperatingPoint;
  if (named && named in points) return named;
  return 'screening' in points ? 'screening' : Object.keys(points)[0]!;
}

/**
 * What serving uses for this model: the point named by `wanted`, else the manifest's default;
 * with the site calibration's temperature and points when there is one for this model file and
 * it has that point, else with the manifest's. A site file without the point (one written
 * before the manifest gained it, e.g. chest 2.0.0's `general`) is not used for it: its
 * temperature with a manifest threshold fitted at another temperature would be neither
 * calibration. `siteIgnored` then says so, naming the file and the command that regenerates it
 * (built from the file's data folder, as siteCalibrationMismatch's).
 * Throws CalibrationError naming the points there are when `wanted` is in neither.
 */
export function resolveCalibration(
  manifest: ModelManifest,
  site: SiteCalibration | null,
  wanted?: string | null,
): EffectiveCalibration {
  const shipped = manifestOperatingPoints(manifest);
  const name = wanted || defaultOperatingPoint(manifest, shipped);
  const sitePoints = site?.operatingPoints ?? {};
  if (site && Object.hasOwn(sitePoints, name)) {
    // The site's points only: a manifest point's threshold (and its validation and external
    // figures) belong to the manifest's temperature, not this one.
    const points: Record<string, OperatingPoint> = {};
    for (const [n, p] of Object.entries(sitePoints)) {
      points[n] = { description: shipped[n]?.description, ...p, chosenOn: p.chosenOn ?? 'site calibration' };
    }
    return {
      source: 'site',
      temperature: site.temperature,
      operatingPoint: name,
      threshold: points[name]!.threshold ?? null,
      operatingPoints: points,
      siteIgnored: null,
    };
  }
  const point = Object.hasOwn(shipped, name) ? shipped[name] : undefined;
  if (!point) {
    const known = [...new Set([...Object.keys(shipped), ...Object.keys(sitePoints)])];
    throw new CalibrationError(`operating point "${name}" is not defined for ${manifest.id} ${manifest.version}; it has ${known.join(', ')}`);
  }
  const threshold = point.rule === 'argmax' ? null : (point.threshold ?? null);
  let siteIgnored: string | null = null;
  if (site) {
    // Said at start-up, so only what siteCalibrationMismatch says: the file, its model and date,
    // the command built from its data folder, and the names of its points that look like names.
    const has = Object.keys(sitePoints).filter((point) => recorded(point, /^[\w.-]{1,64}$/));
    siteIgnored =
      `site calibration ${site.file ?? `${manifest.id}.site.json`}${writtenOn(site)}, fitted on ${describeModelFile(manifest.id, manifest.version, manifest.sha256)}, ` +
      `has no operating point "${name}" ` +
      `(it has ${has.join(', ') || 'none'}), so ${manifest.id} serves "${name}" with the model's own calibration ` +
      `(temperature ${manifest.calibration.temperature}, threshold ${threshold ?? 'argmax'}), not the site's. ` +
      `Regenerate the file with \`${refitCommand(manifest, site)}\`` +
      (has.length ? `, or set CHEST_OPERATING_POINT to one of ${has.join(', ')} to serve the site's point` : '');
  }
  return {
    source: 'model',
    temperature: manifest.calibration.temperature,
    operatingPoint: name,
    threshold,
    operatingPoints: shipped,
    siteIgnored,
  };
}
