/**
 * Scan rules. Every function starts with the access check: a doctor reaches the scans of the
 * patients assigned to them, an admin reaches all, and "not yours" answers exactly like "not
 * there" (404) so scan ids cannot be probed.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { BaseLogger } from 'pino';
import { findPatientForScans, requireAdmin, requireVisibleScan, type Viewer } from '../access/index.js';
import type { AdvanceAudit } from '../audit/log.js';
import { insertAuditEvents, STATEMENT_PATIENT } from '../audit/repository.js';
import type { AppContext } from '../context.js';
import {
  ImageDecodeError,
  inferScanType,
  inspectDicom,
  inspectDicomHead,
  inspectRaster,
  sniffImageKind,
  type DicomInfo,
} from '../imaging/index.js';
import type { ImageKind } from '../imaging/sniff.js';
import * as patientRepo from '../patients/repository.js';
import { placeholderProblem } from '../patients/placeholders.js';
import { createPatientForUpload, patientIdInUse } from '../patients/service.js';
import type { Db } from '../platform/db/index.js';
import { isScanType, SCAN_TYPE_IDS, scanTypeSpec, type ReviewedFinding, type ScanType } from '../scan-types/index.js';
import { AppError, badRequest, conflict, notFound, RETRY_AFTER_SECONDS } from '../platform/errors.js';
import { MAX_YEAR, MIN_YEAR, yearInRange } from '../platform/http/schemas.js';
import { isUuid } from '../platform/ids.js';
import { isUniqueViolation } from '../platform/db/errors.js';
import type { Storage } from '../platform/storage/index.js';
import * as repo from './repository.js';
import { ORIGINAL_EXTENSION, ORIGINAL_MIME, removeScanFiles, scanFileKey } from './stored-files.js';
import { databaseOriginalKey } from './originals.js';
import type { AnnotationBody, ListScansQuery, ReviewBody } from './schemas.js';
import type { UploadedImage, UploadForm } from './upload.js';
import {
  REVIEW_FIELDS,
  annotationView,
  modelResultView,
  scanCoreView,
  findingVersion,
  scanDetailView,
  scanView,
  type FileLinks,
  type KeptFileLink,
} from './view.js';

export type ScanDeps = Pick<AppContext, 'db' | 'storage' | 'imaging' | 'analysis' | 'events' | 'config'>;

const PATIENT_ID = /^[A-Za-z0-9][A-Za-z0-9._\-/]*$/;
/** A scan date a little ahead of the server clock is a clock difference, not an error. */
const CLOCK_SKEW_MS = 24 * 3600 * 1000;

// ---------------------------------------------------------------------------------------------
// Upload

/** Names compared as a person would: case, accents' encoding and spacing do not matter. */
const sameName = (a: string, b: string) => {
  const norm = (s: string) => s.normalize('NFC').trim().replace(/\s+/g, ' ').toLocaleLowerCase();
  return norm(a) === norm(b);
};

/**
 * A patientName sent with an existing patient must be that patient's: a contradiction is
 * more likely the wrong patient than a new spelling, so it is refused rather than ignored.
 * (A name from a DICOM header is not checked: scanners format names their own way.)
 */
function checkSamePatient(patient: patientRepo.PatientRow, formName: string | null): void {
  if (formName !== null && !sameName(formName, patient.name)) {
    throw conflict(
      `patientName does not match the name on record for patient ${patient.patientId}: check that this is the right patient, or leave patientName out to use the record's`,
    );
  }
}

interface UploadRequest {
  patientId: string | null;
  patientName: string | null;
  scanDate: Date | null;
  scanType: ScanType | null;
  /** The DICOM header's PatientID the uploader confirmed filing under the form's patient. */
  confirmDicomPatientId: string | null;
  /** The DICOM header's PatientName the uploader confirmed filing under the patient it does not name. */
  confirmDicomPatientName: string | null;
}

/**
 * The words of a person's name, which two spellings of one name share: accents, case, order,
 * DICOM's ^ separators and single-letter initials aside ("MEHTA^PRIYA^K" and "Priya Mehta"
 * share "mehta" and "priya").
 */
function nameWords(name: string): Set<string> {
  return new Set(
    name
      .normalize('NFKD')
      .replace(/\p{M}+/gu, '')
      .toLocaleLowerCase('en')
      .split(/[^\p{L}\p{N}]+/u)
      .filter((word) => word.length >= 2),
  );
}

/** Words a de-identified header puts where the name was: they name nobody, so contradict nobody. */
const ANONYMOUS_NAME_WORDS = new Set(['anonymous', 'anonymized', 'anonymised', 'anon', 'deidentified', 'removed', 'unknown', 'patient', 'noname', 'none']);

/** A DICOM header's PatientName to compare with the patient the file is filed under. */
interface HeaderName {
  name: string;
  words: string[];
}

/**
 * The header's PatientName when it names someone and the uploader has not confirmed it; null when
 * there is nothing to compare: no name, a placeholder, initials only ("^^^^", "J^D"), a
 * de-identified one, or the very name the uploader confirmed (compared by its words, so the
 * header's "MEHTA^PRIYA" and the answer's "PRIYA MEHTA" confirm alike).
 */
function headerNameToCheck(dicom: DicomInfo | null, confirmed: string | null): HeaderName | null {
  const name = dicom?.patientName?.trim();
  if (!name || placeholderProblem('patientName', name)) return null;
  const words = nameWords(name);
  if ([...words].every((word) => ANONYMOUS_NAME_WORDS.has(word))) return null;
  if (confirmed !== null) {
    const confirmedWords = nameWords(confirmed);
    if (confirmedWords.size === words.size && [...words].every((word) => confirmedWords.has(word))) return null;
  }
  return { name, words: [...words] };
}

/**
 * A DICOM file whose header names another person than the patient it is filed under (no word
 * of the two names in common) is a wrong-patient risk that the identifiers alone miss: two
 * hospitals' record numbers that collide, a modality worklist entry picked for the wrong
 * patient. Refused (409) with the header's name, which the uploader sent, and not the record's,
 * unless the uploader confirms this very name (a name changed since, or written in another
 * script). Spellings of one name (order, case, accents, initials, ^) share a word and pass.
 */
function checkHeaderNameNamesPatient(header: HeaderName | null, name: string, patientId: string, nameIs: 'on record' | 'in the form'): void {
  if (!header) return;
  const words = nameWords(name);
  if (header.words.some((word) => words.has(word))) return;
  throw conflict(
    `The DICOM header's PatientName "${header.name}" shares no name with patient ${patientId}'s name ${nameIs}: check that this file is this patient's. Nothing was stored. If it is (a name changed since, or written in another script), send it again as a form, with the field "confirmDicomPatientName" set to "${header.name}".`,
    // The header's name as data, for a client's "file it anyway" to send back unparsed.
    { dicomPatientName: header.name },
  );
}

/** Identifiers compared as a registration clerk would: case and surrounding spaces aside. */
const sameIdentifier = (a: string, b: string) => a.trim().toLocaleUpperCase('en') === b.trim().toLocaleUpperCase('en');

/**
 * A DICOM file whose header names another patient than the form is a wrong-patient risk (a
 * file picked from the wrong folder, a modality worklist mix-up): refused (409), naming both
 * identifiers to the uploader, who sent both, unless the uploader confirms this very header
 * identifier (an outside study under another hospital's identifier). The header keeps its own
 * identifier in the stored original; the scan is filed under the form's patient. The answer
 * alone names the identifiers: no log line does.
 */
function checkHeaderNamesFormPatient(formPatientId: string, headerPatientId: string | null, confirmed: string | null): void {
  if (!headerPatientId || sameIdentifier(headerPatientId, formPatientId)) return;
  // A placeholder in the header names no patient, so it contradicts none.
  if (placeholderProblem('patientId', headerPatientId)) return;
  if (confirmed !== null && sameIdentifier(confirmed, headerPatientId)) return;
  throw conflict(
    `The DICOM header's PatientID "${headerPatientId}" is not the form's patientId "${formPatientId}": check that this file is this patient's. Nothing was stored. If it is (for example a study from another hospital, under its identifier), send it again with the form field "confirmDicomPatientId" set to "${headerPatientId}" to file it under ${formPatientId}.`,
    // The header's identifier as data, for a client's "file it anyway" to send back unparsed.
    { dicomPatientId: headerPatientId },
  );
}

function checkPatientId(value: string, source: string): string {
  if (value.length > 64 || !PATIENT_ID.test(value)) {
    throw badRequest(
      `patientId ${source} must be 1-64 letters, digits or . _ - / and start with a letter or digit; got "${value.slice(0, 80)}"`,
    );
  }
  const placeholder = placeholderProblem('patientId', value);
  if (placeholder) {
    throw badRequest(
      source === 'in the form'
        ? placeholder
        : `The DICOM header's PatientID "${value}" is a placeholder, not a patient's identifier: send the patient's identifier in the form field "patientId"`,
    );
  }
  return value;
}

function checkScanDate(d: Date, field: string): Date {
  if (Number.isNaN(d.getTime())) throw badRequest(`${field} must be an ISO 8601 date or date-time`);
  if (d.getTime() > Date.now() + CLOCK_SKEW_MS) throw badRequest(`${field} cannot be in the future`);
  if (d.getUTCFullYear() < 1900) throw badRequest(`${field} must be after 1900`);
  return d;
}

/** The text fields of the form, checked; what is missing may still come from a DICOM header. */
function parseUploadFields(fields: UploadForm['fields']): UploadRequest {
  const { patientId, patientName, scanDate, scanType, confirmDicomPatientId, confirmDicomPatientName } = fields;
  if (scanType !== undefined && !isScanType(scanType)) {
    throw badRequest(`scanType must be one of ${SCAN_TYPE_IDS.join(', ')}; got "${scanType.slice(0, 40)}"`);
  }
  if (patientName !== undefined && patientName.length > 200) throw badRequest('patientName must be at most 200 characters');
  const placeholderName = patientName === undefined ? null : placeholderProblem('patientName', patientName);
  if (placeholderName) throw badRequest(placeholderName);
  let date: Date | null = null;
  if (scanDate !== undefined) {
    if (!/^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(scanDate)) {
      throw badRequest('scanDate must be an ISO 8601 date or date-time, e.g. 2025-05-01T15:30:00Z');
    }
    date = checkScanDate(new Date(scanDate.length === 10 ? `${scanDate}T00:00:00.000Z` : scanDate), 'scanDate');
    if (scanDate.length === 10 && date.toISOString().slice(0, 10) !== scanDate) {
      throw badRequest(`scanDate is not a real calendar date: "${scanDate}"`);
    }
  }
  return {
    patientId: patientId === undefined ? null : checkPatientId(patientId, 'in the form'),
    patientName: patientName ?? null,
    scanDate: date,
    scanType: scanType ?? null,
    confirmDicomPatientId: confirmDicomPatientId ?? null,
    confirmDicomPatientName: confirmDicomPatientName ?? null,
  };
}

/** A DICOM StudyDate (already ISO, YYYY-MM-DD) as a scan date; null when absent or implausible. */
function studyDate(date: string | undefined): Date | null {
  if (!date || !/^\d{4}-\d{2}-\d{2}$/.test(date)) return null;
  const d = new Date(`${date}T00:00:00.000Z`);
  if (Number.isNaN(d.getTime()) || d.getTime() > Date.now() + CLOCK_SKEW_MS || d.getUTCFullYear() < 1900) return null;
  return d;
}

function decodeErrorToAppError(err: ImageDecodeError): AppError {
  switch (err.code) {
    case 'unsupported_type':
      return new AppError('unsupported_media_type', err.message);
    case 'too_large':
      return new AppError('payload_too_large', err.message);
    case 'corrupt':
      return new AppError('bad_request', err.message);
    case 'unsupported_encoding':
      return new AppError('unprocessable', err.message);
  }
}

/** The DICOM attributes kept with the scan; the identifying ones live on the patient. */
function dicomSummary(info: DicomInfo): Record<string, unknown> {
  const { patientId: _id, patientName: _name, ...rest } = info;
  return rest;
}

/** What an upload's checks learnt of its image. */
interface CheckedUpload {
  kind: ImageKind;
  width: number;
  height: number;
  dicom: DicomInfo | null;
}

/** A DICOM header check, with what a parser throws besides ImageDecodeError answered as the decoder threads do. */
function inspectDicomHeader<T>(inspect: () => T): T {
  try {
    return inspect();
  } catch (err) {
    if (err instanceof ImageDecodeError) throw err;
    throw new ImageDecodeError('corrupt', 'The file could not be read as an image: it may be damaged or use a variant this server does not support.');
  }
}

/**
 * How much of a large upload's start its header checks may read back from storage (in steps
 * of 4x from the IN_MEMORY_BYTES kept while streaming); past it the header is refused.
 */
const HEADER_PREFIX_LIMIT = 16 * 1024 * 1024;

/**
 * Refuses a file that is not an image we can show, before anything is stored. A DICOM file's
 * header is checked here on the event loop (no pixel is decoded: src/imaging inspectDicom);
 * JPEG, PNG and deflated DICOM files are decoded whole off the event loop (imaging.check), as
 * libvips and inflating need to find a truncated or damaged file, but nothing is encoded. Every
 * upload stores only its original: the display image and thumbnail are rendered from it by the
 * first reader of an image link (src/scans/renditions.ts). A file streamed to storage is
 * checked from its start alone (checkStreamedUpload).
 */
async function checkUpload(deps: ScanDeps, upload: UploadedImage): Promise<CheckedUpload> {
  try {
    if (upload.stored) return await checkStreamedUpload(deps, upload, upload.stored);
    // Sniffed once: what it is decides every check that follows (a streamed upload's was, in upload.ts).
    const kind = sniffImageKind(upload.head);
    if (kind === null) throw new ImageDecodeError('unsupported_type', 'The file is not a JPEG, PNG or DICOM image.');
    return await checkWholeFile(deps, upload.head, kind);
  } catch (err) {
    if (err instanceof ImageDecodeError) throw decodeErrorToAppError(err);
    throw err;
  }
}

async function checkWholeFile(deps: ScanDeps, bytes: Buffer, kind: ImageKind): Promise<CheckedUpload> {
  const maxPixels = deps.config.maxImagePixels;
  if (kind === 'dicom') {
    const inspected = inspectDicomHeader(() => inspectDicom(bytes, { maxPixels }));
    if (inspected !== 'deflated') return { kind, width: inspected.width, height: inspected.height, dicom: inspected.info };
  }
  // Not handed over: the same bytes are stored as the original once checked.
  const checked = await deps.imaging.check(bytes, { maxPixels, kind });
  return { kind: checked.kind, width: checked.width, height: checked.height, dicom: checked.dicom ?? null };
}

/**
 * A file streamed to storage (src/scans/upload.ts), checked from its header without holding
 * it whole: the first bytes kept while it streamed, and when its header is longer, more of its
 * start read back from storage (up to HEADER_PREFIX_LIMIT). What a header cannot tell (pixel
 * data that is corrupt, a compressed frame after the first bytes or deflated data that is
 * truncated) is found by the worker when it renders the image: the scan then ends `failed`
 * with the reason. Nothing is rendered here; the worker (or the first reader of an image
 * link) renders it.
 */
async function checkStreamedUpload(deps: ScanDeps, upload: UploadedImage, stored: NonNullable<UploadedImage['stored']>): Promise<CheckedUpload> {
  const maxPixels = deps.config.maxImagePixels;
  const { kind, key } = stored;
  for (let prefix = upload.head; ; ) {
    // All of a file that turned out small enough is checked as one kept in memory.
    if (prefix.length >= upload.size) return checkWholeFile(deps, prefix, kind);
    const atLimit = prefix.length >= HEADER_PREFIX_LIMIT;
    if (kind === 'dicom') {
      const inspected = inspectDicomHeader(() => inspectDicomHead(prefix, upload.size, { maxPixels }));
      if (inspected !== 'longer-head') return { kind, width: inspected.width, height: inspected.height, dicom: inspected.info };
      if (atLimit) {
        throw new ImageDecodeError(
          'unsupported_encoding',
          `The DICOM header is longer than ${HEADER_PREFIX_LIMIT / 2 ** 20} MB before its pixel data; ImageMedix does not accept such headers.`,
        );
      }
    } else {
      try {
        const { width, height } = await inspectRaster(prefix, kind, maxPixels);
        return { kind, width, height, dicom: null };
      } catch (err) {
        // A header longer than the bytes at hand fails as corrupt too: tried again with more.
        if (!(err instanceof ImageDecodeError) || err.code !== 'corrupt' || atLimit) throw err;
      }
    }
    const longer = await deps.storage.readRange(key, 0, Math.min(upload.size, HEADER_PREFIX_LIMIT, prefix.length * 4));
    if (longer.length <= prefix.length) throw new Error(`storage returned ${longer.length} bytes of a ${upload.size}-byte upload`);
    prefix = longer;
  }
}

type UploadScanOptions = {
  viewer: Viewer;
  form: UploadForm;
  links: FileLinks;
  log: FastifyBaseLogger;
  onPatient?: (patientRowId: string) => void;
  /** The request's audit events for the new scan, committed with it (src/audit auditInAdvance). */
  audit?: (scanId: string) => Promise<AdvanceAudit | null>;
};

/** Set once an upload's rows are, or may be, committed: its files then stay, whatever follows. */
interface UploadRows {
  mayBeCommitted: boolean;
}

const UNCONFIRMED_UPLOAD =
  "The upload may or may not have been saved: the database could not be reached to confirm it. In a moment, look for the scan in the patient's scans before sending it again.";

/**
 * After an upload's write reported an error: its rows as committed, or null when they were not.
 * A COMMIT whose answer was lost (the connection dropped during or right after it) reports an
 * error although the server may have committed it, and a group's upload then written again
 * alone is refused for a duplicate key (repository.ts insertUploadGrouped). The scan id is this
 * upload's own, so a read of it on the pool (not the connection that failed) tells. When that
 * read fails too, the files stay and the client is told to check: a file without a row is an
 * orphan, a row without its file is a scan that can never be shown or analysed.
 */
async function committedUpload(db: Db, scanId: string, log: FastifyBaseLogger, rows: UploadRows) {
  try {
    return await repo.uploadedScan(db, scanId);
  } catch (err) {
    rows.mayBeCommitted = true;
    log.error({ err, scanId }, 'an upload failed and whether it was committed could not be read: its files are kept');
    throw new AppError('unavailable', UNCONFIRMED_UPLOAD, RETRY_AFTER_SECONDS.databaseOutage);
  }
}

/**
 * Before a server process takes its first request (server.ts): every statement an upload runs,
 * run once for a throwaway upload and rolled back (repository.ts warmUpUploadStatements), so the
 * first uploads of a freshly started process do not each pay for the statement's first use
 * while the uploads grouped behind them wait. Its values are of the kind storeUpload writes:
 * the original in the database when small ones are kept there, an audit event, a queued
 * analysis and the webhook deliveries' values.
 */
export async function warmUpUploads(deps: Pick<ScanDeps, 'db' | 'analysis' | 'events' | 'config'>): Promise<void> {
  // As large as a small DICOM slice: stored out of line (TOAST), as a real one's is.
  const original = deps.config.originalsInDatabaseMaxBytes > 0 ? Buffer.alloc(Math.min(9 * 1024, deps.config.originalsInDatabaseMaxBytes)) : null;
  await repo.warmUpUploadStatements(deps.db, (viewer) => {
    const scanId = randomUUID();
    return uploadStatementValues(deps, {
      viewer,
      scanId,
      patientId: `START-UP-CHECK-${randomUUID()}`,
      formName: null,
      // As a DICOM body's upload: the header's name, checked against the patient's by the statement.
      headerNameWords: [...nameWords('Start-up check')],
      newName: 'Start-up check',
      declaredType: null,
      scanDate: new Date(),
      scanType: null,
      image: { kind: 'dicom', width: 1, height: 1, dicom: null },
      keys: uploadKeys(scanId, 'dicom', original ? 'database' : 'files'),
      file: { size: original?.length ?? 1, sha256: '0'.repeat(64) },
      auditRows: [{ action: 'scan.upload', resourceType: 'scan', resourceId: scanId, actorId: viewer.id, actorRole: viewer.role, outcome: 'success', patientIds: [STATEMENT_PATIENT] }],
      original,
    });
  });
}

/** Where a new scan's files go: its original in the database (small ones) or in the file store, and its renditions' keys. */
function uploadKeys(scanId: string, kind: ImageKind, original: 'database' | 'files' | { key: string }) {
  const originalName = `original.${ORIGINAL_EXTENSION[kind]}`;
  return {
    original: typeof original === 'object' ? original.key : original === 'database' ? databaseOriginalKey(scanId, originalName) : scanFileKey(scanId, originalName),
    image: scanFileKey(scanId, 'image.png'),
    thumbnail: scanFileKey(scanId, 'thumb.png'),
  };
}

/** What an upload's statement writes, as storeUpload knows it once its checks passed. */
interface NewUpload {
  viewer: Viewer;
  scanId: string;
  /** A hospital identifier (not a UUID). */
  patientId: string;
  formName: string | null;
  headerNameWords: readonly string[] | null;
  newName: string | null;
  /** The form's scan type, which the analysis keeps; `scanType` may be the header's guess. */
  declaredType: ScanType | null;
  scanDate: Date;
  scanType: ScanType | null;
  image: CheckedUpload;
  keys: ReturnType<typeof uploadKeys>;
  file: Pick<UploadedImage, 'size' | 'sha256'>;
  auditRows: repo.UploadValues['auditRows'];
  original: Buffer | null;
}

/**
 * The values of an upload's statement (repository.ts insertUploadGrouped): the scan's row, its
 * queued analysis and job, the event's webhook values and the audit rows. The one builder of
 * them, for storeUpload and for warmUpUploads, so that the statements run at start-up are the
 * ones uploads run (same variants, same kinds of values).
 */
function uploadStatementValues(deps: Pick<ScanDeps, 'db' | 'analysis' | 'events'>, upload: NewUpload): repo.UploadValues {
  const { db } = deps;
  const { viewer, scanId, image } = upload;
  const dicom = image.dicom;
  // Every upload is analysed, as the API document shows: `"status": "processing"`.
  const status = 'processing' as const;
  const { analysis, job } = deps.analysis.newScanAnalysis({ scanId, scanType: upload.declaredType, requestedBy: viewer.id });
  return {
    viewer,
    patientId: upload.patientId,
    formName: upload.formName,
    headerNameWords: upload.headerNameWords,
    newName: upload.newName,
    scan: {
      id: scanId,
      doctorId: viewer.id,
      scanDate: upload.scanDate,
      scanType: upload.scanType,
      status,
      originalFormat: image.kind,
      originalKey: upload.keys.original,
      imageKey: upload.keys.image,
      thumbnailKey: upload.keys.thumbnail,
      width: image.width,
      height: image.height,
      fileSize: upload.file.size,
      sha256: upload.file.sha256,
      dicom: dicom ? dicomSummary(dicom) : null,
      studyInstanceUid: dicom?.studyInstanceUid ?? null,
      seriesInstanceUid: dicom?.seriesInstanceUid ?? null,
      sopInstanceUid: dicom?.sopInstanceUid ?? null,
    },
    analysis,
    analysisJob: job,
    extras: { deliveryRecords: (patient, newPatientOwner, value) => deps.events.deliveryRecords(db, patient, newPatientOwner, value) },
    extraValues: deps.events.deliveryValues({ type: 'scan.uploaded', scanId, status }),
    auditRows: upload.auditRows,
    original: upload.original,
  };
}

export async function uploadScan(deps: ScanDeps, opts: UploadScanOptions) {
  const streamed = opts.form.image.stored;
  const rows: UploadRows = { mayBeCommitted: false };
  if (!streamed) return storeUpload(deps, opts, rows);
  try {
    return await storeUpload(deps, opts, rows);
  } catch (err) {
    if (rows.mayBeCommitted) throw err;
    // The file streamed in before any check: a refusal removes it, as it removes a stored one.
    try {
      await deps.storage.delete(streamed.key);
    } catch (cleanupErr) {
      opts.log.error({ err: cleanupErr, scanId: streamed.scanId }, 'could not remove the file of a refused upload');
    }
    throw err;
  }
}

async function storeUpload(deps: ScanDeps, { viewer, form, links, log, onPatient, audit: auditFor }: UploadScanOptions, rows: UploadRows) {
  const { db, storage } = deps;
  const request = parseUploadFields(form.fields);
  // Access first, before the expensive decode: someone else's patientId is "in use", the
  // same answer as creating a patient with it (patients/service.ts, patientIdInUse).
  const existing = request.patientId ? await findPatientForScans(db, viewer, request.patientId) : null;
  if (request.patientId) {
    if (existing && !existing.mayAddScans) throw isUuid(request.patientId) ? notFound('Patient') : patientIdInUse(request.patientId);
    if (existing) checkSamePatient(existing.patient, request.patientName);
    // A UUID names a patient's _id: it must exist, never become a new hospital identifier.
    if (!existing && isUuid(request.patientId)) throw notFound('Patient');
  }

  const image = await checkUpload(deps, form.image);
  const dicom = image.dicom;

  const headerPatientId = dicom?.patientId?.trim() || null;
  if (request.patientId) {
    // The hospital identifier the form names: a patient's _id stands for its record's.
    const formPatientId = existing && isUuid(request.patientId) ? existing.patient.patientId : request.patientId;
    checkHeaderNamesFormPatient(formPatientId, headerPatientId, request.confirmDicomPatientId);
  }
  const patientId = request.patientId ?? (headerPatientId ? checkPatientId(headerPatientId, 'from the DICOM header') : null);
  if (!patientId) {
    throw badRequest(
      dicom
        ? 'Form field "patientId" is required: the DICOM header has no PatientID'
        : 'Form field "patientId" is required',
    );
  }
  // The header's name against the form's (which matched the record's, if any) or else the
  // record's; for a patient found only by the statement below (the header's PatientID), there.
  const headerName = headerNameToCheck(dicom, request.confirmDicomPatientName);
  if (request.patientName !== null) checkHeaderNameNamesPatient(headerName, request.patientName, existing?.patient.patientId ?? patientId, 'in the form');
  else if (existing) checkHeaderNameNamesPatient(headerName, existing.patient.name, existing.patient.patientId, 'on record');
  const patientName = request.patientName ?? (dicom?.patientName?.trim().slice(0, 200) || null);
  const scanDate = request.scanDate ?? studyDate(dicom?.studyDate) ?? new Date();
  // The analysis settles the type when the form does not give it: from the DICOM header, else
  // from the image (src/ml/routing.ts). The header's type is shown meanwhile.
  const declaredType = request.scanType;
  const scanType = declaredType ?? (dicom ? inferScanType(dicom) : null);

  const scanId = form.image.stored?.scanId ?? randomUUID();
  // A small upload's original goes into the database with its rows (src/scans/originals.ts):
  // one durable write, the commit, instead of a file's and then the commit's.
  const inDatabase = !form.image.stored && form.image.size <= deps.config.originalsInDatabaseMaxBytes ? form.image.head : null;
  const keys = uploadKeys(scanId, image.kind, form.image.stored ?? (inDatabase ? 'database' : 'files'));

  let saved: repo.UploadedScan;
  let writing = false;
  let audit: AdvanceAudit | null = null;
  try {
    // The original first: a row is only committed once its file exists. If the rows are not
    // committed, the files are removed, so no file outlives a row that was never committed.
    // The image and thumbnail keys name renditions made later (src/scans/renditions.ts).
    // The key is fresh (a new scan's): written in place, no temporary file.
    if (!form.image.stored && !inDatabase) await storage.put(keys.original, form.image.head, ORIGINAL_MIME[image.kind], { fresh: true });
    audit = (await auditFor?.(scanId)) ?? null;
    const values = uploadStatementValues(deps, {
      viewer,
      scanId,
      patientId,
      formName: request.patientName,
      headerNameWords: headerName && request.patientName === null && !existing ? headerName.words : null,
      newName: patientName,
      declaredType,
      scanDate,
      scanType,
      image,
      keys,
      file: form.image,
      auditRows: audit?.rows ?? [],
      original: inDatabase,
    });
    const { status } = values.scan;
    writing = true;
    // A patient on record that the viewer may add scans to, or a new one to create: one
    // statement. Anything else (a refusal, a creation that lost a race) writes nothing there
    // and takes the transaction below, which gives the exact answer or finds the patient.
    const inOneStatement = isUuid(patientId) ? null : await repo.insertUploadGrouped(db, values);
    const insert = () =>
      db.transaction(async (tx) => {
        const found = await findPatientForScans(tx, viewer, patientId);
        if (found && !found.mayAddScans) throw isUuid(patientId) ? notFound('Patient') : patientIdInUse(patientId);
        let patient = found?.patient ?? null;
        if (patient) checkSamePatient(patient, request.patientName);
        if (patient && request.patientName === null) checkHeaderNameNamesPatient(headerName, patient.name, patient.patientId, 'on record');
        if (!patient && isUuid(patientId)) throw notFound('Patient');
        if (!patient) {
          if (!patientName) {
            throw badRequest(
              `Form field "patientName" is required: no patient with patientId ${patientId} exists yet, and one is created from it`,
            );
          }
          patient = await createPatientForUpload(tx, { viewer, patientId, name: patientName });
        }
        const scan = await deps.analysis.enqueueNewScan(
          tx,
          { scanId, scanType: declaredType, requestedBy: viewer.id },
          (analysis) =>
            repo.insertScanWithAnalysis(tx, { ...values.scan, patientId: patient.id }, analysis),
        );
        if (inDatabase) await repo.insertScanOriginal(tx, scanId, inDatabase);
        await deps.events.publish(tx, { type: 'scan.uploaded', scanId, patientId: patient.id, status });
        if (audit) await insertAuditEvents(tx, audit.rowsFor(patient.id));
        return { scan, patient };
      });
    if (inOneStatement) {
      saved = inOneStatement;
    } else {
      try {
        saved = await insert();
      } catch (err) {
        // Two uploads creating the same new patient at once: the loser retries and finds it.
        if (!isUniqueViolation(err)) throw err;
        saved = await insert();
      }
    }
  } catch (err) {
    // A refusal (AppError) comes from a transaction that was rolled back; anything else that
    // failed once the write began may be a commit whose answer was lost.
    const committed = writing && !(err instanceof AppError) ? await committedUpload(db, scanId, log, rows) : null;
    if (!committed) {
      try {
        // The keys are a new scan id's, so nothing but this upload wrote them.
        for (const key of Object.values(keys)) await storage.delete(key);
      } catch (cleanupErr) {
        log.error({ err: cleanupErr, scanId }, 'could not remove the files of a failed upload');
      }
      throw err;
    }
    log.warn({ err, scanId }, 'an upload reported an error but its rows were committed: answered as stored');
    saved = committed;
  }
  // The rows are committed: whatever fails below (signing the links), the files stay.
  rows.mayBeCommitted = true;
  audit?.committed(saved.patient.id);
  onPatient?.(saved.patient.id);
  return scanCoreView(saved, links);
}

// ---------------------------------------------------------------------------------------------
// Reading

function parseFilterDate(value: string, field: string, endOfDay: boolean): Date {
  const dateOnly = value.length === 10;
  const d = new Date(dateOnly ? `${value}T00:00:00.000Z` : value);
  if (Number.isNaN(d.getTime()) || (dateOnly && d.toISOString().slice(0, 10) !== value)) {
    throw badRequest(`${field} is not a valid date: "${value}"`);
  }
  if (!yearInRange(d)) throw badRequest(`${field} must be between the years ${MIN_YEAR} and ${MAX_YEAR}`);
  if (!endOfDay) return d;
  // The end is inclusive: a whole day for a date, the instant itself for a date-time.
  return new Date(d.getTime() + (dateOnly ? 24 * 3600 * 1000 : 1));
}

export async function listScans(
  db: Db,
  {
    viewer,
    query,
    links,
    onPatients,
  }: { viewer: Viewer; query: ListScansQuery; links: FileLinks; onPatients?: (patientRowIds: string[]) => void },
) {
  const from = query.startDate ? parseFilterDate(query.startDate, 'startDate', false) : undefined;
  const until = query.endDate ? parseFilterDate(query.endDate, 'endDate', true) : undefined;
  if (from && until && from >= until) throw badRequest('startDate must not be after endDate');
  const empty = { scans: [], currentPage: query.page, totalPages: 0, totalScans: 0 };

  let patientRowId: string | undefined;
  if (query.patientId) {
    patientRowId = (await repo.visiblePatientRowId(db, viewer, query.patientId)) ?? undefined;
    if (!patientRowId) return empty;
  }
  const { rows, total } = await repo.listVisibleScans(db, viewer, {
    page: query.page,
    limit: query.limit,
    status: query.status,
    scanType: query.scanType,
    patientRowId,
    from,
    until,
  });
  onPatients?.(rows.map((r) => r.patient.id));
  return {
    scans: keptViews(rows, links),
    currentPage: query.page,
    totalPages: Math.ceil(total / query.limit),
    totalScans: total,
  };
}

/**
 * The views of a kept list page (repository.ts keeps a page's rows, the same array, until a
 * write): built once per page and set of links instead of on every request (scanView was 15%
 * of a kept page's request). Links depend on the viewer, the base URL and the expiry step, and
 * on nothing else but the path: one link of the page, built anew, says whether they changed.
 * The files whose links the views hold are kept with them, so that each answer still says it
 * hands them out (the audit trail's link.issue names every scan of every answer).
 */
const viewsOfPage = new WeakMap<readonly repo.ScanListRow[], { link: string; views: ReturnType<typeof scanView>[]; files: KeptFileLink[] }>();

function keptViews(rows: readonly repo.ScanListRow[], links: FileLinks): ReturnType<typeof scanView>[] {
  const first = rows[0];
  if (!first) return [];
  const link = links.file(first.scan.imageKey, first.scan.id);
  const kept = viewsOfPage.get(rows);
  if (kept?.link === link) {
    links.handedOut(kept.files);
    return kept.views;
  }
  const files: KeptFileLink[] = [];
  const recorded: FileLinks = {
    ...links,
    file(key, scanId) {
      files.push([key, scanId]);
      return links.file(key, scanId);
    },
  };
  const views = rows.map((r) => scanView(r, recorded));
  viewsOfPage.set(rows, { link, views, files });
  return views;
}

/** GET /api/scans/:id's answer: one statement (repository's visibleScanDetail), 404 when not the viewer's. */
async function detail(db: Db, viewer: Viewer, id: string, links: FileLinks) {
  const found = isUuid(id) ? await repo.visibleScanDetail(db, viewer, id) : null;
  if (!found) throw notFound('Scan');
  const { scan, history, reviews } = found;
  const analysis = history.find((a) => a.id === scan.currentAnalysisId) ?? null;
  const review = reviews.at(-1) ?? null;
  const reviewedAnalysis = review ? (history.find((a) => a.id === review.analysisId) ?? null) : null;
  return scanDetailView({ ...found, analysis, review, reviewedAnalysis }, links);
}

export async function getScan(db: Db, { viewer, id, links }: { viewer: Viewer; id: string; links: FileLinks }) {
  return detail(db, viewer, id, links);
}

export async function scanStatus(
  deps: ScanDeps,
  { viewer, id, onPatient }: { viewer: Viewer; id: string; onPatient?: (patientRowId: string) => void },
) {
  const row = isUuid(id) ? await repo.visibleScanStatus(deps.db, viewer, id) : null;
  if (!row) throw notFound('Scan');
  onPatient?.(row.patientId);
  const job = await deps.analysis.jobStatus(id, row.latest);
  return {
    status: row.status,
    failureReason: row.failureReason ?? (row.status === 'failed' ? row.refusalReason : null),
    // The document's shape, {state, progress}, for every scan that was ever queued.
    jobStatus: job ? { state: job.state, progress: Math.round(job.progress), stage: job.stage } : null,
  };
}

/**
 * The original pixel values of a DICOM scan for window/level in the viewer, decoded off the
 * event loop. A JPEG or PNG has only its 8-bit rendering (imageUrl): 409 says so.
 */
export async function scanPixels(
  deps: Pick<ScanDeps, 'db' | 'storage' | 'imaging' | 'config'>,
  { viewer, id }: { viewer: Viewer; id: string },
) {
  const { scan } = await requireVisibleScan(deps.db, viewer, id);
  if (scan.originalFormat !== 'dicom') {
    throw conflict(`This scan was uploaded as ${scan.originalFormat.toUpperCase()}: it has no DICOM pixel data to window; use its imageUrl`);
  }
  const bytes = await deps.storage.get(scan.originalKey);
  try {
    return await deps.imaging.modalityPixels(bytes, { maxPixels: deps.config.maxImagePixels });
  } catch (err) {
    if (err instanceof ImageDecodeError) throw decodeErrorToAppError(err);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Review

function pick(source: object | null | undefined): ReviewedFinding {
  const out: Record<string, unknown> = {};
  if (!source) return out;
  for (const field of REVIEW_FIELDS) {
    if (field in source) out[field] = (source as Record<string, unknown>)[field];
  }
  return out;
}

/**
 * The merge rules of a review (PATCH /api/scans/:id), applied to the current finding (the
 * standing review, else the model's); the OpenAPI document states the same (schemas.ts):
 * - a field left out keeps its current value; `null` clears it;
 * - only the fields of the scan's type apply, and the kind must be one of its model's labels;
 * - "nothing found" (hasTumor/hasPneumonia false) clears the kind and the location; naming a
 *   kind implies the finding is present;
 * - when the finding changes and the current one has a confidence, `confidence` must be sent
 *   (a number or null): the old value was the confidence of another finding, and software
 *   neither keeps it silently nor drops it silently.
 */
function mergeReview(scanType: ScanType | null, base: ReviewedFinding, patch: ReviewedFinding): ReviewedFinding {
  const fieldsOf = (type: ScanType) => {
    const { presence, kind, location } = scanTypeSpec(type).fields;
    return location ? [presence, kind, location] : [presence, kind];
  };
  // Fields of another scan type do not apply; without a type, fields of two types contradict.
  const touched = SCAN_TYPE_IDS.map((type) => ({ type, fields: fieldsOf(type).filter((f) => f in patch) })).filter(
    (t) => t.fields.length > 0,
  );
  for (const [i, { type, fields }] of touched.entries()) {
    const other = scanType ?? touched[i + 1]?.type;
    if (other !== undefined && other !== type) throw badRequest(`result.${fields[0]} does not apply to a ${other} scan`);
  }
  const p = patch as Record<string, unknown>;
  const b = base as Record<string, unknown>;
  const merged: Record<string, unknown> = { ...base, ...patch };
  const sameValue = (x: unknown, y: unknown) => (x ?? null) === (y ?? null);
  let changedFrom: string | null = null;
  for (const type of SCAN_TYPE_IDS) {
    const { fields, labels, negativeLabel } = scanTypeSpec(type);
    const { presence, kind, location } = fields;
    const kinds = labels.filter((l) => l !== negativeLabel);
    if (typeof p[kind] === 'string' && !kinds.includes(p[kind])) {
      throw badRequest(
        `result.${kind} must be one of ${kinds.map((k) => `"${k}"`).join(', ')} or null for a ${type} scan; got "${p[kind].slice(0, 60)}"`,
      );
    }
    if (p[presence] === false) {
      for (const field of location ? [kind, location] : [kind]) {
        if (p[field]) throw badRequest(`result.${field} must be null when result.${presence} is false`);
        merged[field] = null;
      }
    } else if (p[kind] && p[presence] === undefined) {
      merged[presence] = true;
    }
    if (!sameValue(merged[presence], b[presence]) || !sameValue(merged[kind], b[kind])) {
      const was = b[kind] ?? b[presence] ?? 'no finding';
      changedFrom = b[presence] === false ? 'no finding' : `"${typeof was === 'string' ? was : JSON.stringify(was)}"`;
    }
  }
  if (changedFrom !== null && !('confidence' in patch) && typeof base.confidence === 'number') {
    throw badRequest(
      `result.confidence is required when the finding changes: the current confidence (${base.confidence}) was for ${changedFrom}; send the reviewed finding's confidence (0 to 1) or null`,
    );
  }
  return merged;
}

/** The opaque tags of an If-Match header (quotes and a weak prefix taken off), or '*'. */
function ifMatchTags(header: string): string[] | '*' {
  if (header.trim() === '*') return '*';
  // The version names the finding, not the bytes of an answer: a proxy that compressed the
  // answer and so made its ETag weak (W/) still names the same finding.
  return header.split(',').map((tag) => tag.trim().replace(/^W\//, '').replace(/^"(.*)"$/, '$1'));
}

/**
 * Refuses a review sent with If-Match when the finding changed since its author loaded it:
 * the later save would replace a review (or judge an analysis) its author never saw. Only the
 * reviewer's name and the time are named, never anything of the patient.
 */
function checkFindingVersion(
  header: string,
  { viewer, scan, previous, analysis }: { viewer: Viewer; scan: repo.ScanRow; previous: repo.LatestReview | undefined; analysis: repo.AnalysisRow | undefined },
): void {
  const tags = ifMatchTags(header);
  const current = findingVersion(previous?.id, scan.currentAnalysisId);
  if (tags === '*' || tags.includes(current)) return;
  const again = 'Your review was not saved: reload the scan to see the finding as it is now, then reapply your changes.';
  const loadedThisReview = tags.some((tag) => tag.split('.')[0] === (previous?.id ?? 'unreviewed'));
  if (previous && !loadedThisReview) {
    const who = previous.reviewer?.id === viewer.id ? 'You (in another window or tab)' : (previous.reviewer?.name ?? 'A former user');
    throw new AppError(
      'precondition_failed',
      `${who} reviewed this finding at ${previous.reviewedAt.toISOString()}, after you loaded it. ${again}`,
    );
  }
  const finished = analysis?.completedAt ? ` at ${analysis.completedAt.toISOString()}` : '';
  throw new AppError('precondition_failed', `A newer analysis of this scan finished${finished}, after you loaded it. ${again}`);
}

export async function reviewScan(
  db: Db,
  { viewer, id, body, ifMatch, links }: { viewer: Viewer; id: string; body: ReviewBody; ifMatch?: string; links: FileLinks },
) {
  const reviewed = await db.transaction(async (tx) => {
    // Reviews of one scan one after another: each merges into, and is checked against, the
    // review before it, never into a finding read before that review committed.
    if (isUuid(id)) await repo.lockScan(tx, id);
    const found = await requireVisibleScan(tx, viewer, id);
    const { scan } = found;
    // One connection: queries in a transaction run one after another.
    const analysis = (await repo.currentAnalyses(tx, [scan])).get(scan.id);
    const previous = (await repo.latestReviews(tx, [scan.id])).get(scan.id);
    if (ifMatch !== undefined) checkFindingVersion(ifMatch, { viewer, scan, previous, analysis });
    // The physician edits what the scan shows: the standing review, else the model's output.
    const base = previous ? pick(previous.result) : pick(modelResultView(analysis, links));
    const result = mergeReview(scan.scanType, base, body.result ?? {});
    // Every review is a new row (who, when, what, which analysis it judged); none is overwritten.
    await repo.insertReview(tx, {
      scanId: scan.id,
      analysisId: scan.currentAnalysisId,
      status: body.status ?? scan.status,
      result,
      reviewedBy: viewer.id,
    });
    const changesStatus = body.status !== undefined && body.status !== scan.status;
    // A physician's verdict replaces an earlier refusal; the analysis keeps its reason.
    const updated = await repo.updateScanRow(
      tx,
      scan.id,
      changesStatus ? { status: body.status, ...(body.status === 'failed' ? {} : { failureReason: null }) } : {},
    );
    return updated;
  });
  return detail(db, viewer, reviewed.id, links);
}

// ---------------------------------------------------------------------------------------------
// Annotations

export async function addAnnotation(
  db: Db,
  { viewer, id, annotation }: { viewer: Viewer; id: string; annotation: AnnotationBody },
) {
  const { scan } = await requireVisibleScan(db, viewer, id);
  const { x, y } = annotation;
  const size = `the image is ${scan.width}x${scan.height} pixels`;
  if (x > scan.width - 1) throw badRequest(`x must be between 0 and ${scan.width - 1}: ${size}`);
  if (y > scan.height - 1) throw badRequest(`y must be between 0 and ${scan.height - 1}: ${size}`);
  const text = annotation.text.trim();
  if (text === '') throw badRequest('text must not be blank');
  await db.transaction(async (tx) => {
    await repo.insertAnnotation(tx, { scanId: scan.id, x, y, text, createdBy: viewer.id });
    await repo.touchScan(tx, scan.id);
  });
  const annotations = await repo.annotationsOf(db, scan.id);
  return { _id: scan.id, annotations: annotations.map(annotationView) };
}

// ---------------------------------------------------------------------------------------------
// Delete

/** Deletes the scan's row (its analyses, reviews, annotations and reports by cascade). */
/** Deletes a scan (its rows, then its stored files); returns what the audit trail records. */
export async function deleteScan(
  db: Db,
  { viewer, id, storage, log }: { viewer: Viewer; id: string; storage: Storage; log: Pick<BaseLogger, 'error'> },
): Promise<{ id: string; patientId: string }> {
  requireAdmin(viewer, 'Only administrators can delete scans');
  const deleted = await db.transaction(async (tx) => {
    const { scan } = await requireVisibleScan(tx, viewer, id);
    const files = await repo.storedFilesOf(tx, [scan.id]);
    await repo.deleteScanRow(tx, scan.id);
    return { id: scan.id, patientId: scan.patientId, files };
  });
  await removeScanFiles(storage, deleted.files, log);
  return { id: deleted.id, patientId: deleted.patientId };
}

