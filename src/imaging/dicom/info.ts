import type { DataSet } from 'dicom-parser';
import { element, firstItem, firstString, functionalGroup, numbers, textDecoder, uint16 } from './values.js';

export interface DicomInfo {
  patientId?: string;
  /** Person name made readable: "Doe^John^^Dr" becomes "Dr John Doe". */
  patientName?: string;
  /** ISO date (YYYY-MM-DD). */
  studyDate?: string;
  modality?: string;
  bodyPartExamined?: string;
  studyInstanceUid?: string;
  seriesInstanceUid?: string;
  sopInstanceUid?: string;
  /** Row spacing then column spacing in mm, from Pixel Spacing (0028,0030) only. */
  pixelSpacing?: [number, number];
  transferSyntaxUid?: string;
  rows?: number;
  columns?: number;
  numberOfFrames?: number;
  photometricInterpretation?: string;
  bitsAllocated?: number;
}

/**
 * A DICOM person name (PS3.5 6.2.1) as a person would write it. Only the alphabetic group is
 * used (ideographic and phonetic groups follow '='); components are family^given^middle^prefix^suffix.
 */
function formatPersonName(value: string): string | undefined {
  const alphabetic = (value.split('=')[0] ?? '').trim();
  if (alphabetic === '') return undefined;
  const [family = '', given = '', middle = '', prefix = '', suffix = ''] = alphabetic.split('^').map((p) => p.trim());
  const name = [prefix, given, middle, family].filter((part) => part !== '').join(' ');
  const full = suffix !== '' ? `${name}, ${suffix}` : name;
  return full === '' ? undefined : full;
}

/** DA (YYYYMMDD, or the ACR-NEMA YYYY.MM.DD) to an ISO date; impossible dates are dropped. */
function formatDicomDate(value: string): string | undefined {
  const match = /^(\d{4})\.?(\d{2})\.?(\d{2})$/.exec(value.trim());
  if (!match) return undefined;
  const [, y, m, d] = match as unknown as [string, string, string, string];
  const date = new Date(Date.UTC(Number(y), Number(m) - 1, Number(d)));
  if (date.getUTCFullYear() !== Number(y) || date.getUTCMonth() !== Number(m) - 1 || date.getUTCDate() !== Number(d)) {
    return undefined;
  }
  return `${y}-${m}-${d}`;
}

function pixelSpacing(dataSet: DataSet): [number, number] | undefined {
  const candidates = [dataSet, functionalGroup(dataSet, 'x00289110')];
  for (const source of candidates) {
    if (!source) continue;
    const [row, column] = numbers(source, 'x00280030');
    // Anonymisers and some CR writers put 0\0 here, which means "unknown", not zero mm.
    if (row !== undefined && column !== undefined && row > 0 && column > 0 && Number.isFinite(row + column)) {
      return [row, column];
    }
  }
  return undefined;
}

function bodyPart(dataSet: DataSet, decode: (b: Uint8Array) => string): string | undefined {
  const direct = firstString(dataSet, 'x00180015', decode);
  if (direct) return direct.toUpperCase();
  // Enhanced objects may code the anatomy in Frame Anatomy > Anatomic Region instead.
  const region = firstItem(functionalGroup(dataSet, 'x00209071'), 'x00082218');
  const meaning = region ? firstString(region, 'x00080104', decode) : undefined;
  return meaning?.toUpperCase();
}

export function readDicomInfo(dataSet: DataSet, transferSyntaxUid: string): DicomInfo {
  const decode = textDecoder(dataSet);
  const text = (tag: string) => firstString(dataSet, tag, decode);
  const patientNameRaw = text('x00100010');
  const studyDateRaw = text('x00080020');
  const frames = numbers(dataSet, 'x00280008')[0];
  const info: DicomInfo = {
    patientId: text('x00100020'),
    patientName: patientNameRaw === undefined ? undefined : formatPersonName(patientNameRaw),
    studyDate: studyDateRaw === undefined ? undefined : formatDicomDate(studyDateRaw),
    modality: text('x00080060')?.toUpperCase(),
    bodyPartExamined: bodyPart(dataSet, decode),
    studyInstanceUid: text('x0020000d'),
    seriesInstanceUid: text('x0020000e'),
    sopInstanceUid: text('x00080018'),
    pixelSpacing: pixelSpacing(dataSet),
    transferSyntaxUid,
    rows: uint16(dataSet, 'x00280010'),
    columns: uint16(dataSet, 'x00280011'),
    // A single-frame object has no Number of Frames attribute; it still has one frame.
    numberOfFrames: element(dataSet, 'x00280008')
      ? frames !== undefined && Number.isInteger(frames) && frames > 0
        ? frames
        : undefined
      : element(dataSet, 'x7fe00010') || dataSet.elements.x7fe00010
        ? 1
        : undefined,
    photometricInterpretation: text('x00280004')?.toUpperCase(),
    bitsAllocated: uint16(dataSet, 'x00280100'),
  };
  // Leave absent attributes out rather than present-but-undefined, so JSON and deepEqual agree.
  for (const key of Object.keys(info) as Array<keyof DicomInfo>) if (info[key] === undefined) delete info[key];
  return info;
}
