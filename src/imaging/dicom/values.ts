import type { DataSet, Element } from 'dicom-parser';

/**
 * Bounds-checked readers for element values. dicom-parser's own accessors read past the end
 * of a truncated element or throw on a missing multi-value index; these answer `undefined`.
 */

const UNDEFINED_LENGTH = 0xffffffff;

export function element(dataSet: DataSet, tag: string): Element | undefined {
  const found = dataSet.elements[tag];
  if (!found || found.length === UNDEFINED_LENGTH) return undefined;
  if (found.dataOffset + found.length > dataSet.byteArray.length) return undefined;
  return found;
}

function elementBytes(dataSet: DataSet, tag: string): Uint8Array | undefined {
  const found = element(dataSet, tag);
  if (!found) return undefined;
  return dataSet.byteArray.subarray(found.dataOffset, found.dataOffset + found.length);
}

export function uint16(dataSet: DataSet, tag: string): number | undefined {
  const found = element(dataSet, tag);
  if (!found || found.length < 2) return undefined;
  return dataSet.uint16(tag);
}

/** Characters sets of (0008,0005) mapped to WHATWG encoding labels Node's TextDecoder knows. */
const ENCODINGS: Record<string, string> = {
  'ISO_IR 6': 'windows-1252',
  'ISO_IR 100': 'windows-1252',
  'ISO_IR 101': 'iso-8859-2',
  'ISO_IR 109': 'iso-8859-3',
  'ISO_IR 110': 'iso-8859-4',
  'ISO_IR 144': 'iso-8859-5',
  'ISO_IR 127': 'iso-8859-6',
  'ISO_IR 126': 'iso-8859-7',
  'ISO_IR 138': 'iso-8859-8',
  'ISO_IR 148': 'iso-8859-9',
  'ISO_IR 203': 'iso-8859-15',
  'ISO_IR 166': 'windows-874',
  'ISO_IR 13': 'shift_jis',
  'ISO_IR 192': 'utf-8',
  GB18030: 'gb18030',
  GBK: 'gbk',
  'ISO 2022 IR 6': 'windows-1252',
  'ISO 2022 IR 100': 'windows-1252',
  'ISO 2022 IR 87': 'iso-2022-jp',
  'ISO 2022 IR 159': 'iso-2022-jp',
  'ISO 2022 IR 13': 'iso-2022-jp',
  'ISO 2022 IR 149': 'euc-kr',
  'ISO 2022 IR 58': 'gb2312',
};

/**
 * A decoder for the data set's text. Only the character set that decides how non-ASCII bytes
 * read is used: for ISO 2022 code extensions that is the last listed one. The ISO 2022 escape
 * sequences themselves are stripped where the target decoder does not understand them.
 */
export function textDecoder(dataSet: DataSet): (bytes: Uint8Array) => string {
  const raw = elementBytes(dataSet, 'x00080005');
  const terms = raw ? Buffer.from(raw).toString('latin1').split('\\').map((t) => t.trim()) : [];
  const term = [...terms].reverse().find((t) => t !== '') ?? 'ISO_IR 6';
  const label = ENCODINGS[term] ?? 'windows-1252';
  let decoder: TextDecoder;
  try {
    decoder = new TextDecoder(label);
  } catch {
    decoder = new TextDecoder('windows-1252');
  }
  const keepEscapes = label === 'iso-2022-jp';
  return (bytes) => {
    const input = keepEscapes ? bytes : stripIso2022Escapes(bytes);
    return decoder.decode(input);
  };
}

function stripIso2022Escapes(bytes: Uint8Array): Uint8Array {
  if (!bytes.includes(0x1b)) return bytes;
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === 0x1b) {
      // ESC, then intermediate bytes (0x20-0x2f), then one final byte.
      i++;
      while (i < bytes.length && bytes[i]! >= 0x20 && bytes[i]! <= 0x2f) i++;
      continue;
    }
    out.push(bytes[i]!);
  }
  return Uint8Array.from(out);
}

export type TextDecode = (bytes: Uint8Array) => string;

/**
 * All values of a string element, trimmed of the padding DICOM allows (spaces, NUL). Control
 * characters inside a value (a crafted file's NUL in PatientName) are dropped: they are not
 * text, and PostgreSQL refuses NUL in text and jsonb.
 */
function strings(dataSet: DataSet, tag: string, decode: TextDecode): string[] {
  const bytes = elementBytes(dataSet, tag);
  if (!bytes || bytes.length === 0) return [];
  return decode(bytes)
    .split('\\')
    .map((value) =>
      value
        .replace(/[\0\s]+$/u, '')
        .replace(/^[\0 ]+/u, '')
        .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]/gu, ''),
    );
}

export function firstString(dataSet: DataSet, tag: string, decode: TextDecode): string | undefined {
  const value = strings(dataSet, tag, decode)[0];
  return value === undefined || value === '' ? undefined : value;
}

/** Values of a DS or IS element; unparsable values are NaN so callers see the position. */
export function numbers(dataSet: DataSet, tag: string): number[] {
  const bytes = elementBytes(dataSet, tag);
  if (!bytes || bytes.length === 0) return [];
  return Buffer.from(bytes)
    .toString('latin1')
    .split('\\')
    .map((value) => {
      const trimmed = value.replace(/\0/g, '').trim();
      return trimmed === '' ? Number.NaN : Number(trimmed);
    });
}

export function firstNumber(dataSet: DataSet, tag: string): number | undefined {
  const value = numbers(dataSet, tag)[0];
  return value === undefined || !Number.isFinite(value) ? undefined : value;
}

/** The data set of the first item of a sequence, if the parser read its items. */
export function firstItem(dataSet: DataSet | undefined, tag: string): DataSet | undefined {
  return dataSet?.elements[tag]?.items?.[0]?.dataSet;
}

/**
 * Enhanced multi-frame objects (Enhanced MR/CT, ...) keep per-frame attributes such as the
 * rescale and window inside functional group macros rather than at the top level. This finds
 * a macro in the shared groups, or else in the first frame's groups.
 */
export function functionalGroup(dataSet: DataSet, macroTag: string): DataSet | undefined {
  return (
    firstItem(firstItem(dataSet, 'x52009229'), macroTag) ?? firstItem(firstItem(dataSet, 'x52009230'), macroTag)
  );
}
