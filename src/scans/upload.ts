/**
 * Reading an upload: the multipart form (one file in `image`, a few short text fields) with
 * the size limit enforced while streaming, and the form fields turned into a typed request.
 * The file type is never taken from the client's Content-Type or file name: src/imaging
 * decides it from the bytes.
 *
 * A file up to IN_MEMORY_BYTES is kept in memory whole (the hot path: DICOM slices of a few
 * kB). A larger one is streamed to storage under its scan's `original.<ext>` as it arrives,
 * hashed on the way, and only its first bytes are kept: enough to tell its type and, for all
 * but headers longer than them, to check its header (src/scans/service.ts, which reads a longer
 * start back from storage when needed, never the whole file). Memory per upload stays about
 * IN_MEMORY_BYTES whatever MAX_UPLOAD_MB is.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { PassThrough, Transform, type Readable } from 'node:stream';
import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import { sniffImageKind } from '../imaging/index.js';
import type { ImageKind } from '../imaging/sniff.js';
import { AppError, badRequest } from '../platform/errors.js';
import { controlCharacterIn } from '../platform/http/text-input.js';
import type { Storage } from '../platform/storage/index.js';
import { ORIGINAL_EXTENSION, ORIGINAL_MIME, scanFileKey } from './stored-files.js';

/**
 * Files up to this size are read into memory whole; above it they are streamed to storage and
 * this much of their start is kept (a DICOM, JPEG or PNG header rarely needs more than a few kB of it).
 */
export const IN_MEMORY_BYTES = 1024 * 1024;

const UPLOAD_FIELDS = ['patientId', 'patientName', 'scanDate', 'scanType', 'confirmDicomPatientId', 'confirmDicomPatientName'] as const;
type UploadField = (typeof UPLOAD_FIELDS)[number];

/** The uploaded file, in memory whole or already in storage. */
export interface UploadedImage {
  /** The whole file; or, when `stored`, its first IN_MEMORY_BYTES. */
  head: Buffer;
  size: number;
  sha256: string;
  /** Where a file too large to keep in memory was streamed to, under its scan's id; null when `head` is all of it. */
  stored: { scanId: string; key: string; kind: ImageKind } | null;
}

export interface UploadForm {
  image: UploadedImage;
  fields: Partial<Record<UploadField, string>>;
}

/** Room for the form's text fields and multipart boundaries on top of the file itself. */
const FORM_OVERHEAD_BYTES = 64 * 1024;
const MAX_FIELD_BYTES = 1024;

function tooLarge(maxMb: number): AppError {
  return new AppError('payload_too_large', `The file is larger than the upload limit of ${maxMb} MB`);
}

interface MultipartError {
  code?: string;
}

/** What a streamed upload buffers between the socket and storage. */
const STREAM_BUFFER_BYTES = 1024 * 1024;

type FilePart = Readable & { truncated?: boolean };

/** Storage failing under a streamed upload: a server error (500), not a malformed form. */
class StoreUploadError extends Error {
  override name = 'StoreUploadError';
  readonly statusCode = 500;
}

/** Waits until `body` takes more data or is closed. */
const writable = (body: PassThrough) =>
  new Promise<void>((resolve) => {
    const done = () => {
      body.off('drain', done);
      body.off('close', done);
      resolve();
    };
    body.on('drain', done);
    body.on('close', done);
  });

/**
 * Reads the file part to its end: into memory when it is small, else into storage as it
 * arrives. On any failure (over the limit, the client gone, storage failing) nothing is left
 * in storage; over the limit, the rest of the part is still read so the answer reaches the client.
 */
async function receiveImage(file: FilePart, storage: Storage, maxUploadMb: number): Promise<UploadedImage> {
  const hash = createHash('sha256');
  const source = file[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let size = 0;
  let ended = false;
  while (size <= IN_MEMORY_BYTES) {
    const next = await source.next();
    if (next.done) {
      ended = true;
      break;
    }
    hash.update(next.value);
    chunks.push(next.value);
    size += next.value.length;
  }
  if (file.truncated) throw tooLarge(maxUploadMb);
  const received = Buffer.concat(chunks, size);
  if (ended) return { head: received, size, sha256: hash.digest('hex'), stored: null };
  // A copy, so that a large first chunk is not kept whole once it is written.
  const head = Buffer.from(received.subarray(0, IN_MEMORY_BYTES));

  const kind = sniffImageKind(head);
  if (!kind) {
    for (;;) if ((await source.next()).done) break;
    throw new AppError('unsupported_media_type', 'The file is not a JPEG, PNG or DICOM image.');
  }
  const scanId = randomUUID();
  const key = scanFileKey(scanId, `original.${ORIGINAL_EXTENSION[kind]}`);
  // Room for a few socket reads while storage writes, so the writes are batched (writev).
  const body = new PassThrough({ highWaterMark: STREAM_BUFFER_BYTES });
  // Failures reach us through `stored`; an 'error' without a listener would end the process.
  body.on('error', () => undefined);
  const stored = storage.putStream(key, body, ORIGINAL_MIME[kind]);
  const storedSettled = stored.then(
    () => undefined,
    () => body.destroy(),
  );
  // Over the limit: stop storing at once (the rest of the part is still read, unstored).
  const onLimit = () => body.destroy(tooLarge(maxUploadMb));
  file.once('limit', onLimit);
  try {
    body.write(received);
    for (;;) {
      const next = await source.next();
      if (next.done) break;
      hash.update(next.value);
      size += next.value.length;
      if (!body.destroyed && !body.write(next.value)) await Promise.race([writable(body), storedSettled]);
    }
  } catch (err) {
    // The client went away mid-file: the stored part is removed before the error goes on.
    body.destroy(err as Error);
    await storedSettled;
    throw err;
  } finally {
    file.off('limit', onLimit);
  }
  if (file.truncated) {
    onLimit();
    await storedSettled;
    throw tooLarge(maxUploadMb);
  }
  body.end();
  await stored.catch((err: unknown) => {
    throw new StoreUploadError('could not store the uploaded file', { cause: err });
  });
  return { head, size, sha256: hash.digest('hex'), stored: { scanId, key, kind } };
}

/**
 * Reads the whole form, refusing anything over the limit as it streams in. A file streamed to
 * storage is removed again if the form is refused after it; once this returns, the caller
 * owns it (src/scans/service.ts uploadScan removes it on a refusal).
 */
export async function readUploadForm(
  request: FastifyRequest,
  { maxUploadMb, storage, log }: { maxUploadMb: number; storage: Storage; log: FastifyBaseLogger },
): Promise<UploadForm> {
  const maxBytes = maxUploadMb * 1024 * 1024;
  if (isDicomBody(request)) return readDicomBody(request, { maxUploadMb, storage, log });
  if (!request.isMultipart()) {
    throw new AppError(
      'unsupported_media_type',
      `Send the scan as multipart/form-data with the file in the "image" field, or a DICOM file as the whole body with Content-Type: ${DICOM_MEDIA_TYPE}`,
    );
  }
  // Refuse an announced oversized body before reading it.
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes + FORM_OVERHEAD_BYTES) throw tooLarge(maxUploadMb);

  let image: UploadedImage | null = null;
  const fields: Partial<Record<UploadField, string>> = {};
  try {
    const parts = request.parts({
      limits: { fileSize: maxBytes, files: 1, fields: 10, parts: 12, fieldSize: MAX_FIELD_BYTES },
    });
    for await (const part of parts) {
      if (part.type === 'file') {
        if (part.fieldname !== 'image') {
          await part.toBuffer().catch(() => undefined);
          throw badRequest(`The file must be sent in the form field "image", not "${part.fieldname}"`);
        }
        image = await receiveImage(part.file, storage, maxUploadMb);
        continue;
      }
      const name = part.fieldname;
      if (name === 'image') throw badRequest('Form field "image" must be a file, not text');
      if (!(UPLOAD_FIELDS as readonly string[]).includes(name)) {
        throw badRequest(`Form field "${name}" is not allowed; send image, ${UPLOAD_FIELDS.join(', ')}`);
      }
      if (part.valueTruncated) throw badRequest(`Form field "${name}" is too long`);
      // Before trimming: a control character is refused, not quietly cut off the ends.
      const char = typeof part.value === 'string' ? controlCharacterIn(part.value) : null;
      if (char) throw badRequest(`Form field "${name}" contains a control character (${char}): send plain text`);
      if (typeof part.value === 'string' && /[\t\n\r]/.test(part.value.trim())) {
        throw badRequest(`Form field "${name}" must be one line of text`);
      }
      if (fields[name as UploadField] !== undefined) throw badRequest(`Form field "${name}" is sent more than once`);
      const value = typeof part.value === 'string' ? part.value.trim() : String(part.value);
      if (value !== '') fields[name as UploadField] = value;
    }
  } catch (err) {
    if (image?.stored) {
      try {
        await storage.delete(image.stored.key);
      } catch (cleanupErr) {
        log.error({ err: cleanupErr, scanId: image.stored.scanId }, 'could not remove the file of a refused upload');
      }
    }
    if (err instanceof AppError) throw err;
    switch ((err as MultipartError).code) {
      case 'FST_REQ_FILE_TOO_LARGE':
        throw tooLarge(maxUploadMb);
      case 'FST_FILES_LIMIT':
        throw badRequest('Send exactly one file, in the form field "image"');
      case 'FST_FIELDS_LIMIT':
      case 'FST_PARTS_LIMIT':
        throw badRequest(`Too many form fields; send image, ${UPLOAD_FIELDS.join(', ')}`);
      case 'FST_PROTO_VIOLATION':
        throw badRequest('The form contains a field name that is not allowed');
      case 'FST_INVALID_JSON_FIELD_ERROR':
        throw badRequest('A form field declared as JSON is not valid JSON');
      default:
        // Busboy reports a malformed or truncated body as a plain Error.
        if (err instanceof Error && !('statusCode' in err && Number(err.statusCode) >= 500)) {
          throw badRequest(`The multipart form could not be read: ${err.message}`);
        }
        throw err;
    }
  }
  if (!image) throw badRequest('Form field "image" is required: attach the scan file');
  if (image.size === 0) throw badRequest('The image file is empty');
  return { image, fields };
}

/** The media type of a DICOM Part 10 file sent as the whole request body (RFC 3240, as STOW-RS and Orthanc's `POST /instances` take it). */
export const DICOM_MEDIA_TYPE = 'application/dicom';

function isDicomBody(request: FastifyRequest): boolean {
  const type = request.headers['content-type'];
  return type !== undefined && type.split(';', 1)[0]!.trim().toLowerCase() === DICOM_MEDIA_TYPE;
}

/**
 * The body as a file part: bytes past `maxBytes` are dropped, and the part marked truncated
 * with a 'limit' event, as busboy does for a form's file, so that receiveImage treats both alike
 * (the rest is still read, so the 413 reaches the client). A client gone mid-body fails it.
 */
function limitedBody(body: Readable, maxBytes: number): FilePart {
  let size = 0;
  const part: Transform & { truncated?: boolean } = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      if (part.truncated) return done();
      size += chunk.length;
      if (size <= maxBytes) return done(null, chunk);
      part.truncated = true;
      const fits = chunk.length - (size - maxBytes);
      if (fits > 0) this.push(chunk.subarray(0, fits));
      part.emit('limit');
      done();
    },
  });
  // Not stream.pipeline: the AbortController it makes per call, and the DOMException its end
  // raises, were ~2% of the event loop's time per upload (docs/benchmarks/ingest.md).
  body.on('error', (err) => part.destroy(err));
  body.on('close', () => {
    if (!body.readableEnded) part.destroy(new Error('The client went away before the whole body arrived'));
  });
  body.pipe(part);
  return part;
}

/**
 * A body announced (Content-Length, already checked against the limit) as small enough to keep
 * in memory whole, the hot path (a DICOM slice of a few kB), read straight off the request:
 * none of limitedBody's and receiveImage's Transform, pipe and async iterator per request
 * (docs/benchmarks/ingest.md, 2026-12-07 fourteenth session). The HTTP parser delivers no more
 * than the announced bytes; a client gone before all of them fails it, as in limitedBody.
 */
function receiveSmallBody(body: IncomingMessage): Promise<UploadedImage> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
    };
    const onEnd = () => {
      done();
      const head = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size);
      resolve({ head, size, sha256: createHash('sha256').update(head).digest('hex'), stored: null });
    };
    const onError = (err: Error) => {
      done();
      reject(err);
    };
    const onClose = () => {
      if (!body.readableEnded) onError(new Error('The client went away before the whole body arrived'));
    };
    // The error listener stays: an 'error' without one would end the process (a second
    // settling of the promise does nothing).
    const done = () => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('close', onClose);
    };
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    body.on('close', onClose);
  });
}

/**
 * A DICOM Part 10 file as the whole body (`Content-Type: application/dicom`; the route's
 * content-type parser hands the request stream over unread): the same size limit, streaming
 * and refusals as the form's `image`, and no text fields, so the patient, study date and scan
 * type come from the DICOM header as they do for a form without them. The type is still read
 * from the bytes: a JPEG or PNG has no header to name its patient and is refused with 415.
 */
async function readDicomBody(
  request: FastifyRequest,
  { maxUploadMb, storage, log }: { maxUploadMb: number; storage: Storage; log: FastifyBaseLogger },
): Promise<UploadForm> {
  const maxBytes = maxUploadMb * 1024 * 1024;
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge(maxUploadMb);
  const image =
    Number.isFinite(declared) && declared <= IN_MEMORY_BYTES
      ? await receiveSmallBody(request.raw)
      : await receiveImage(limitedBody(request.raw, maxBytes), storage, maxUploadMb);
  if (image.size === 0) throw badRequest('The image file is empty');
  // Anything not an image goes on to the checks that refuse it for a form too (same 415).
  const kind = image.stored?.kind ?? sniffImageKind(image.head);
  if (kind === 'jpeg' || kind === 'png') {
    if (image.stored) {
      try {
        await storage.delete(image.stored.key);
      } catch (cleanupErr) {
        log.error({ err: cleanupErr, scanId: image.stored.scanId }, 'could not remove the file of a refused upload');
      }
    }
    throw new AppError(
      'unsupported_media_type',
      `The body is not a DICOM file: send a ${kind === 'jpeg' ? 'JPEG' : 'PNG'} as multipart/form-data with the file in the "image" field`,
    );
  }
  return { image, fields: {} };
}
