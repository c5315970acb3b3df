import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(fileURLToPath(import.meta.url), '../../../..');
/** The shared DICOM sample set; it sits beside the repository in development and in CI. */
export const sharedDicomDir = path.resolve(repoRoot, '../shared/datasets/dicom');
export const dicomFixturesDir = path.join(repoRoot, 'test/fixtures/imaging');
export const imageFixturesDir = path.join(repoRoot, 'test/fixtures/images');

export const sharedDicom = (relative: string): Buffer => readFileSync(path.join(sharedDicomDir, relative));
export const dicomFixture = (name: string): Buffer => readFileSync(path.join(dicomFixturesDir, name));
export const imageFixture = (name: string): Buffer => readFileSync(path.join(imageFixturesDir, name));
