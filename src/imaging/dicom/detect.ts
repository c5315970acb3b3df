/**
 * Recognising DICOM from its first bytes. A DICOM Part 10 file has a 128-byte preamble and
 * 'DICM'; some systems also send the file meta group or even a bare data set without the
 * preamble. Those are accepted only when the first elements decode as a plausible, ordered
 * run of group 0002 / 0008 elements, so random bytes that happen to start with 02 00 or 08 00
 * are not mistaken for DICOM.
 */
export type DicomLayout =
  | { kind: 'part10' }
  | { kind: 'meta-without-preamble' }
  | { kind: 'bare-dataset'; explicitVr: boolean };

const VRS = new Set([
  'AE', 'AS', 'AT', 'CS', 'DA', 'DS', 'DT', 'FD', 'FL', 'IS', 'LO', 'LT', 'OB', 'OD', 'OF', 'OL', 'OV',
  'OW', 'PN', 'SH', 'SL', 'SQ', 'SS', 'ST', 'SV', 'TM', 'UC', 'UI', 'UL', 'UN', 'UR', 'US', 'UT', 'UV',
]);
/** VRs whose explicit encoding has two reserved bytes and a 32-bit length (PS3.5 7.1.2). */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);

const UNDEFINED_LENGTH = 0xffffffff;

function hasPart10Prefix(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 132 && bytes[128] === 0x44 && bytes[129] === 0x49 && bytes[130] === 0x43 && bytes[131] === 0x4d
  );
}

/** Whether the two bytes at `offset` spell a DICOM value representation. */
export function isVrAt(bytes: Uint8Array, offset: number): boolean {
  if (offset + 2 > bytes.length) return false;
  return VRS.has(String.fromCharCode(bytes[offset]!, bytes[offset + 1]!));
}

function u16(bytes: Uint8Array, offset: number): number {
  return bytes[offset]! | (bytes[offset + 1]! << 8);
}

function u32(bytes: Uint8Array, offset: number): number {
  return (u16(bytes, offset) + u16(bytes, offset + 2) * 0x10000) >>> 0;
}

/**
 * Reads up to three elements from the start as little endian. True when they are well formed:
 * a known VR (explicit), an even length that fits in the file, ascending tags, and a first
 * element in `firstGroup`.
 */
function looksLikeElements(bytes: Uint8Array, explicitVr: boolean, firstGroup: number): boolean {
  let offset = 0;
  let previousTag = -1;
  let valid = 0;
  while (valid < 3) {
    if (offset === bytes.length && valid > 0) return true;
    if (offset + 8 > bytes.length) return false;
    const group = u16(bytes, offset);
    const tag = group * 0x10000 + u16(bytes, offset + 2);
    if (valid === 0 && group !== firstGroup) return false;
    if (tag <= previousTag || group < firstGroup || group > 0x7fe0) return false;
    let length: number;
    let headerLength: number;
    let vr: string | undefined;
    if (explicitVr) {
      if (!isVrAt(bytes, offset + 4)) return false;
      vr = String.fromCharCode(bytes[offset + 4]!, bytes[offset + 5]!);
      if (LONG_VRS.has(vr)) {
        if (offset + 12 > bytes.length || bytes[offset + 6] !== 0 || bytes[offset + 7] !== 0) return false;
        length = u32(bytes, offset + 8);
        headerLength = 12;
      } else {
        length = u16(bytes, offset + 6);
        headerLength = 8;
      }
    } else {
      length = u32(bytes, offset + 4);
      headerLength = 8;
    }
    // Undefined length belongs to sequences (and encapsulated pixel data), which never open a
    // data set; after a good first element, one whose next tag is an item ends the probe.
    if (length === UNDEFINED_LENGTH) {
      if (valid === 0 || (vr !== undefined && vr !== 'SQ' && vr !== 'UN' && vr !== 'OB')) return false;
      const next = offset + headerLength;
      if (next + 4 > bytes.length || u16(bytes, next) !== 0xfffe) return false;
      const itemElement = u16(bytes, next + 2);
      return itemElement === 0xe000 || itemElement === 0xe0dd;
    }
    if (length % 2 !== 0 || offset + headerLength + length > bytes.length) return false;
    offset += headerLength + length;
    previousTag = tag;
    valid++;
  }
  return true;
}

export function detectDicomLayout(bytes: Uint8Array): DicomLayout | null {
  if (hasPart10Prefix(bytes)) return { kind: 'part10' };
  // The file meta group is always explicit VR little endian (PS3.10 7.1).
  if (looksLikeElements(bytes, true, 0x0002)) return { kind: 'meta-without-preamble' };
  if (looksLikeElements(bytes, true, 0x0008)) return { kind: 'bare-dataset', explicitVr: true };
  if (looksLikeElements(bytes, false, 0x0008)) return { kind: 'bare-dataset', explicitVr: false };
  return null;
}
