/**
 * Helpers for the scans tests: multipart bodies for `app.inject`, uploads, and running the
 * analysis job's handler directly with a fake analyzer (as the worker would).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import sharp from 'sharp';
import { analyzeScanJob, type Analyzer, type AnalyzerOutput } from '../analysis/analyze.job.js';
import type { ScanImage } from './renditions.js';
import { checkImage, decodeOriginalPixels, inspectDicomHead, sniffImageKind } from '../imaging/index.js';
import { ImageDecodeError, undecodableImage } from '../imaging/errors.js';
import { latestAnalysisOf } from '../analysis/repository.js';
import type { HeatmapMap } from '../platform/db/schema.js';
import { PermanentJobError } from '../platform/queue/index.js';
import { REPO_ROOT } from '../platform/config.js';
import type { TestApp, TestUser } from '../../test/helpers/app.js';
import type { Db } from '../platform/db/index.js';

export const FIXTURES = path.join(REPO_ROOT, 'test/fixtures');
export const SHARED_DATASETS = path.resolve(REPO_ROOT, '../shared/datasets');

export type FormPart =
  | { name: string; value: string }
  | { name: string; filename: string; contentType: string; data: Buffer };

export function multipart(parts: FormPart[]): { payload: Buffer; headers: Record<string, string> } {
  const boundary = `----imagemedix-${randomBytes(8).toString('hex')}`;
  const chunks: Buffer[] = [];
  for (const part of parts) {
    chunks.push(Buffer.from(`--${boundary}\r\n`));
    if ('data' in part) {
      chunks.push(
        Buffer.from(
          `Content-Disposition: form-data; name="${part.name}"; filename="${part.filename}"\r\nContent-Type: ${part.contentType}\r\n\r\n`,
        ),
        part.data,
        Buffer.from('\r\n'),
      );
    } else {
      chunks.push(Buffer.from(`Content-Disposition: form-data; name="${part.name}"\r\n\r\n${part.value}\r\n`));
    }
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(chunks), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

export interface UploadOptions {
  data: Buffer;
  filename?: string;
  contentType?: string;
  fields?: Record<string, string>;
}

export function uploadRequest(user: TestUser | null, { data, filename = 'scan.jpg', contentType = 'image/jpeg', fields = {} }: UploadOptions) {
  const body = multipart([
    ...Object.entries(fields).map(([name, value]) => ({ name, value })),
    { name: 'image', filename, contentType, data },
  ]);
  return {
    method: 'POST' as const,
    url: '/api/scans',
    headers: { ...body.headers, ...(user ? user.auth : {}) },
    payload: body.payload,
  };
}

/**
 * The form fields that file a DICOM fixture under a test's own patient: its header's PatientID
 * and PatientName, confirmed (a header naming another patient than the form, by identifier or by
 * name, is refused unconfirmed). Nothing for a file with neither, or one that is not a readable
 * DICOM file.
 */
export async function confirmHeaderPatient(data: Buffer): Promise<{ confirmDicomPatientId?: string; confirmDicomPatientName?: string }> {
  if (sniffImageKind(data) !== 'dicom') return {};
  const maxPixels = 1e9;
  let info: { patientId?: string; patientName?: string } | null | undefined = null;
  try {
    // The header alone, from the file's start as the server reads a large upload's: no pixel decoded.
    for (const bytes of [2 ** 20, 16 * 2 ** 20, data.length]) {
      const head = inspectDicomHead(data.subarray(0, bytes), data.length, { maxPixels });
      if (head !== 'longer-head') {
        info = head.info;
        break;
      }
    }
  } catch {
    // Not a header this reads as it stands: the whole check below.
  }
  if (info === null) info = await checkImage(data, { maxPixels }).then((checked) => checked.dicom, () => undefined);
  const id = info?.patientId?.trim();
  const name = info?.patientName?.trim();
  return { ...(id ? { confirmDicomPatientId: id } : {}), ...(name ? { confirmDicomPatientName: name } : {}) };
}

/** Path and query of an absolute link, for `app.inject`. */
export function localPath(absoluteUrl: string): string {
  const u = new URL(absoluteUrl);
  return `${u.pathname}${u.search}`;
}

export async function pngSize(png: Buffer): Promise<{ width: number; height: number; format: string }> {
  const meta = await sharp(png).metadata();
  return { width: meta.width ?? 0, height: meta.height ?? 0, format: meta.format ?? '' };
}

const run = promisify(execFile);

export async function pdfText(pdf: Buffer): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'imagemedix-pdf-'));
  try {
    const file = path.join(dir, 'report.pdf');
    await writeFile(file, pdf);
    const { stdout } = await run('pdftotext', ['-layout', file, '-']);
    return stdout;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs the queued analysis of a scan through the real job handler with a fake model. */
export async function runAnalysis(t: TestApp, scanId: string, output: AnalyzerOutput, onImage?: (image: ScanImage) => void): Promise<void> {
  const analyzer: Analyzer = {
    async analyze(_scanType, image, onStage) {
      onImage?.(image);
      // An original is decoded as the analyzer thread decodes it (analyzer.thread.ts), so a
      // file that cannot be decoded fails here as it fails there.
      if ('original' in image) {
        try {
          await decodeOriginalPixels(image.original, { maxPixels: t.ctx.config.maxImagePixels });
        } catch (err) {
          if (err instanceof ImageDecodeError) {
            const failure = undecodableImage(err);
            if (failure.permanent) throw new PermanentJobError(failure.message);
          }
          throw err;
        }
      }
      await onStage('inference');
      return output;
    },
  };
  const job = analyzeScanJob({ db: t.ctx.db, analyzer, renditions: t.ctx.renditions, events: t.ctx.events });
  const analysis = await latestAnalysisOf(t.ctx.db, scanId);
  if (!analysis) throw new Error(`scan ${scanId} has no queued analysis`);
  try {
    await job.handler({ scanId, analysisId: analysis.id }, { jobId: analysis.jobId ?? 'test', attempt: 1, log: pino({ level: 'silent' }) });
  } catch (err) {
    // A refusal, or an image that cannot be decoded, ends the job with a permanent error
    // after recording the failure.
    if (!output.refused && !(err instanceof PermanentJobError)) throw err;
  }
}

/** A 7 x 7 map (the 224 px models' size) hottest at its centre, fading to 0 at the corners. */
export function heatmapMap(): HeatmapMap {
  const values = Array.from({ length: 49 }, (_, i) => Math.fround(Math.max(0, 1 - Math.hypot((i % 7) - 3, Math.floor(i / 7) - 3) / 4)));
  return { width: 7, height: 7, values };
}

/** A PNG whose header claims `width` x `height` pixels: a decompression bomb's signature. */
export function pngClaiming(width: number, height: number): Buffer {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc32 = (buf: Buffer) => {
    let c = 0xffffffff;
    for (const byte of buf) c = crcTable[(c ^ byte) & 0xff]! ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(8 + data.length + 4);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

type Session = Db['_']['session'];

/**
 * `db` whose session prepares statements and opens transactions through `override` (given the
 * real session), for tests that watch or break the upload's writes; everything else is the real
 * database's.
 */
export function withSession(db: Db, override: (session: Session) => Partial<Pick<Session, 'prepareQuery' | 'transaction'>>): Db {
  const own = override(db._.session);
  const session = new Proxy(db._.session, {
    get(target, prop, receiver) {
      if (prop === 'prepareQuery' && own.prepareQuery) return own.prepareQuery;
      if (prop === 'transaction' && own.transaction) return own.transaction;
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
  const internals = { ...db._, session };
  return new Proxy(db, {
    get(target, prop, receiver) {
      if (prop === 'session') return session;
      if (prop === '_') return internals;
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
}
