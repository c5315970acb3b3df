/**
 * Reading an upload: the multipart form (one file in `image`, a few short text fields) with
 * the size limit enforced while streaming, and the form fields turned into a typed request.
 * The file type is never taken from the client's Content-Type or file name: src/imaging
 * decides it from the bytes.
 */
import type { FastifyRequest } from 'fastify';
import { AppError, badRequest } from '../platform/errors.js';
import { controlCharacterIn } from '../platform/http/text-input.js';

const UPLOAD_FIELDS = ['patientId', 'patientName', 'scanDate', 'scanType'] as const;
type UploadField = (typeof UPLOAD_FIELDS)[number];

export interface UploadForm {
  image: Buffer;
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

/** Reads the whole form, refusing anything over the limit as it streams in. */
export async function readUploadForm(request: FastifyRequest, maxUploadMb: number): Promise<UploadForm> {
  const maxBytes = maxUploadMb * 1024 * 1024;
  if (!request.isMultipart()) {
    throw new AppError(
      'unsupported_media_type',
      'Send the scan as multipart/form-data with the file in the "image" field',
    );
  }
  // Refuse an announced oversized body before reading it.
  const declared = Number(request.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes + FORM_OVERHEAD_BYTES) throw tooLarge(maxUploadMb);

  let image: Buffer | null = null;
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
        image = await part.toBuffer();
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
  if (image.length === 0) throw badRequest('The image file is empty');
  return { image, fields };
}
