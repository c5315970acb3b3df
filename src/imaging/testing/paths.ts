import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(fileURLToPath(import.meta.url), '../../../..');
/** The shared DICOM sample set; it sits beside the repository in development and in CI. */
const sharedDicomDir = path.resolve(repoRoot, '../shared/datasets/dicom');
const dicomFixturesDir = path.join(repoRoot, 'test/fixtures/imaging');
const imageFixturesDir = path.join(repoRoot, 'test/fixtures/images');

export const sharedDicom = (relative: string): Buffer => readFileSync(path.join(sharedDicomDir, relative));
export const dicomFixture = (name: string): Buffer => readFileSync(path.join(dicomFixturesDir, name));
export const imageFixture = (name: string): Buffer => readFileSync(path.join(imageFixturesDir, name));
