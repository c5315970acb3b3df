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
}

export function siteCalibrationPath(dir: string, modelId: string): string {
  return path.join(dir, `${modelId}.site.json`);
}

/**
 * The site calibration for this model file, or null when there is none. One written for another
 * model file (another version, a retrained network) is ignored: its thresholds do not apply.
 */
export function readSiteCalibration(dir: string | null | undefined, manifest: ModelManifest): SiteCalibration | null {
  if (!dir) return null;
  const file = siteCalibrationPath(dir, manifest.id);
  if (!existsSync(file)) return null;
  let raw: SiteCalibration;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8')) as SiteCalibration;
  } catch (err) {
    throw new CalibrationError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (raw.model?.sha256 !== manifest.sha256) return null;
  if (!(typeof raw.temperature === 'number' && raw.temperature > 0)) throw new CalibrationError(`${file}: temperature must be > 0`);
  for (const [name, p] of Object.entries(raw.operatingPoints ?? {})) {
    if (!(typeof p.threshold === 'number' && p.threshold > 0 && p.threshold < 1)) {
      throw new CalibrationError(`${file}: operatingPoints.${name}.threshold must be between 0 and 1`);
    }
  }
  return raw;
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
 * What serving uses for this model: temperature and points from the site calibration when
 * there is one for this model file, else from the manifest; the point named by `wanted`, else
 * the manifest's default. Throws CalibrationError naming the points there are when `wanted` is
 * not one of them.
 */
export function resolveCalibration(
  manifest: ModelManifest,
  site: SiteCalibration | null,
  wanted?: string | null,
): EffectiveCalibration {
  const points: Record<string, OperatingPoint> = { ...manifestOperatingPoints(manifest) };
  if (site) {
    for (const [name, p] of Object.entries(site.operatingPoints)) {
      points[name] = { ...points[name], ...p, chosenOn: p.chosenOn ?? 'site calibration' };
    }
  }
  const name = wanted || defaultOperatingPoint(manifest, points);
  const point = points[name];
  if (!point) {
    throw new CalibrationError(
      `operating point "${name}" is not defined for ${manifest.id} ${manifest.version}; it has ${Object.keys(points).join(', ')}`,
    );
  }
  return {
    source: site ? 'site' : 'model',
    temperature: site ? site.temperature : manifest.calibration.temperature,
    operatingPoint: name,
    threshold: point.rule === 'argmax' ? null : (point.threshold ?? null),
    operatingPoints: points,
  };
}
