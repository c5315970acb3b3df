/**
 * The JPEG and PNG files under a dataset folder, at any depth, in name order: what the
 * measurement scripts (scripts/measure-routing.ts, scripts/measure-orientation.ts) run through
 * the served pipeline, in an order that makes their figures reproducible.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';

export async function datasetImages(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await datasetImages(p)));
    else if (/\.(png|jpe?g)$/i.test(entry.name)) out.push(p);
  }
  return out;
}
