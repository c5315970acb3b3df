import { readFileSync, writeFileSync } from 'node:fs';
import { execSync } from 'node:child_process';
import path from 'node:path';
import { decodeUpload, decodeDicomPixels } from './index.js';
const root = '/work/shared/datasets/dicom';
const files = execSync(`find ${root} -name '*.dcm'`).toString().trim().split('\n').sort();
for (const f of files) {
  const rel = path.relative(root, f);
  const t = Date.now();
  try {
    const r = await decodeUpload(readFileSync(f));
    writeFileSync('/tmp/out/' + rel.replace(/\//g, '_') + '.png', r.png);
    console.log(rel, 'OK', r.width, r.height, Date.now() - t, 'ms', JSON.stringify(r.dicom));
  } catch (e) {
    console.log(rel, 'ERR', (e as any).code, (e as Error).message, Date.now() - t, 'ms');
  }
}
