/**
 * Shared by the ML tests: where the installed models and the fixture images are. The tests
 * run against the real models in models/ and skip, saying why, when one is not installed
 * (never in CI, where the committed models must be there).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { SCAN_TYPE_IDS, type ScanType } from '../scan-types/index.js';
import { ModelRegistry } from './registry.js';

const ROOT = path.resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const TEST_MODELS_DIR = path.join(ROOT, 'models');
const ML_FIXTURES_DIR = path.join(ROOT, 'test', 'fixtures', 'ml');

export function fixturePath(task: ScanType, label: string): string {
  return path.join(ML_FIXTURES_DIR, `${task}--${label}.png`);
}

export function fixture(task: ScanType, label: string): Promise<Buffer> {
  return readFile(fixturePath(task, label));
}

/** The installed models, and for each task why its tests must skip (false when they can run). */
export async function loadTestModels(): Promise<{ registry: ModelRegistry; skip: Record<ScanType, string | false> }> {
  const registry = await ModelRegistry.load({ dir: TEST_MODELS_DIR });
  const skip = (task: ScanType): string | false => {
    if (!registry.has(task)) return `model ${task} is not installed in models/ (train it with ml/train.py)`;
    if (!existsSync(fixturePath(task, registry.get(task).manifest.labels[0]!))) {
      return `no fixtures for ${task} in test/fixtures/ml (run scripts/make-ml-fixtures.ts)`;
    }
    return false;
  };
  const reasons = Object.fromEntries(SCAN_TYPE_IDS.map((t) => [t, skip(t)])) as Record<ScanType, string | false>;
  // In CI a missing model or fixture is a broken build, not a reason to skip.
  const missing = Object.values(reasons).filter((r): r is string => r !== false);
  if (process.env.CI && missing.length > 0) throw new Error(`CI requires every model: ${missing.join('; ')}`);
  return { registry, skip: reasons };
}
