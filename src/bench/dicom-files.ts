/**
 * Generated DICOM uploads for the benchmarks that write (bench:ingest, and the mixed mode of
 * bench:api and bench:big): small MR instances built from the shared NEMA MR1 slice, each its
 * own SOP instance, sent as the multipart body a browser's FormData would send.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import { syntheticImage } from '../imaging/testing/dicom-writer.js';
import { REPO_ROOT } from '../platform/config.js';

const MR1 = path.resolve(REPO_ROOT, '../shared/datasets/dicom/mr_brain/MR1_UNC.dcm');

/**
 * N distinct ~10 kB MR instances: the MR1 slice downsampled to 64 x 64, new UIDs each.
 * `patients` names the patient set (its 20 patients' IDs and names), so bench:ingest's warm-up
 * uploads land on patients of their own and the measured ones still create theirs.
 */
export function makeFiles(n: number, patients = { id: 'INGEST', name: 'PATIENT' }): Uint8Array<ArrayBuffer>[] {
  const source = readFileSync(MR1);
  const ds = dicomParser.parseDicom(new Uint8Array(source));
  const rows = ds.uint16('x00280010')!;
  const cols = ds.uint16('x00280011')!;
  const px = ds.elements.x7fe00010!;
  const pixels = new Uint16Array(source.buffer.slice(source.byteOffset + px.dataOffset, source.byteOffset + px.dataOffset + px.length));
  const step = rows / 64;
  const small = new Array<number>(64 * 64);
  for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) small[y * 64 + x] = pixels[y * step * cols + x * step]!;
  const run = `2.25.${BigInt(`0x${randomBytes(12).toString('hex')}`).toString()}`;
  const files: Uint8Array<ArrayBuffer>[] = [];
  for (let i = 0; i < n; i++) {
    const patient = i % 20;
    const file = syntheticImage({
        rows: 64,
        columns: 64,
        values: small,
        bitsStored: 12,
        extra: [
          { tag: 0x00080018, vr: 'UI', value: `${run}.${i + 1}` },
          { tag: 0x00080020, vr: 'DA', value: '20240315' },
          { tag: 0x00080060, vr: 'CS', value: 'MR' },
          { tag: 0x00100010, vr: 'PN', value: `BENCH^${patients.name}${patient}` },
          { tag: 0x00100020, vr: 'LO', value: `${patients.id}-${run.slice(-6)}-${patient}` },
          { tag: 0x00180015, vr: 'CS', value: 'BRAIN' },
          { tag: 0x0020000d, vr: 'UI', value: `${run}.9${patient}` },
          { tag: 0x0020000e, vr: 'UI', value: `${run}.8${patient}` },
          { tag: 0x00200013, vr: 'IS', value: String(i + 1) },
        ],
    });
    files.push(new Uint8Array(file));
  }
  return files;
}

const BOUNDARY = `----imagemedix-bench-${randomBytes(8).toString('hex')}`;
export const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`;

/** A file as the body a browser's FormData would send: one `image` part. Built before the clock starts. */
function multipartBody(file: Uint8Array, filename: string): Uint8Array<ArrayBuffer> {
  const head = Buffer.from(
    `--${BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);
  const body = new Uint8Array(head.length + file.length + tail.length);
  body.set(head, 0);
  body.set(file, head.length);
  body.set(tail, head.length + file.length);
  return body;
}

export const multipartBodies = (files: Uint8Array[]): Uint8Array<ArrayBuffer>[] => files.map((f, i) => multipartBody(f, `${i}.dcm`));

