import { createRequire } from 'node:module';
import { constants as zlibConstants, inflateRawSync } from 'node:zlib';
import type { ByteArrayParser, ByteStream, DataSet, Element } from 'dicom-parser';
import { describeThrown, ImageDecodeError } from '../errors.js';
import { detectDicomLayout, isVrAt } from './detect.js';
import {
  EXPLICIT_VR_LITTLE_ENDIAN,
  IMPLICIT_VR_LITTLE_ENDIAN,
  lookupTransferSyntax,
  type TransferSyntax,
} from './transfer-syntax.js';

// dicom-parser ships a webpack UMD bundle whose named exports Node's ESM loader cannot see.
const require = createRequire(import.meta.url);
const dicomParser = require('dicom-parser') as typeof import('dicom-parser') & {
  ByteStream: new (parser: ByteArrayParser, byteArray: Uint8Array, position?: number) => ByteStream;
  DataSet: new (parser: ByteArrayParser, byteArray: Uint8Array, elements: Record<string, Element>) => DataSet;
};

export interface ParsedDicom {
  dataSet: DataSet;
  transferSyntax: TransferSyntax;
  /** The bytes the element offsets refer to (the inflated copy for deflated files). */
  byteArray: Uint8Array;
  /** Set when parsing stopped early; elements read before the problem are still in `dataSet`. */
  parseProblem?: string;
}

const corrupt = (detail: string) => new ImageDecodeError('corrupt', `The DICOM file is corrupt: ${detail}`);

/**
 * The file meta group (0002,xxxx) after 'DICM'. dicom-parser's readPart10Header keeps reading
 * while tags sort below (0002,FFFF), so a data set that opens with an (illegal but real) group
 * 0001 element is swallowed into the meta; this stops at the first element of another group.
 */
function readFileMeta(byteArray: Uint8Array): { meta: DataSet; position: number } {
  const parser = dicomParser.littleEndianByteArrayParser;
  const elements: Record<string, Element> = {};
  const warnings: string[] = [];
  let position = 132;
  try {
    const stream = new dicomParser.ByteStream(parser, byteArray, position);
    while (stream.position + 8 <= byteArray.length && (byteArray[stream.position]! | (byteArray[stream.position + 1]! << 8)) === 0x0002) {
      const element = dicomParser.readDicomElementExplicit(stream, warnings);
      element.parser = parser;
      elements[element.tag] = element;
      position = stream.position;
    }
  } catch (thrown) {
    throw corrupt(`its file meta information could not be read (${describeThrown(thrown)}).`);
  }
  if (position > byteArray.length) throw corrupt('its file meta information runs past the end of the file.');
  const meta = new dicomParser.DataSet(parser, byteArray, elements);
  meta.warnings = warnings;
  return { meta, position };
}

/** Implicit or explicit VR, judged from the first data set element the way pydicom does. */
function firstElementIsExplicit(bytes: Uint8Array, position: number): boolean {
  return isVrAt(bytes, position + 4);
}

function readTransferSyntaxUid(meta: DataSet, bytes: Uint8Array, position: number): string {
  const declared = meta.string('x00020010')?.replace(/\0/g, '').trim();
  if (declared) return declared;
  // Some writers omit (0002,0010). The data set itself tells explicit from implicit VR.
  return firstElementIsExplicit(bytes, position) ? EXPLICIT_VR_LITTLE_ENDIAN : IMPLICIT_VR_LITTLE_ENDIAN;
}

/**
 * Inflates the start of a deflate stream of which only the first bytes are at hand (no error
 * for the missing end), to at most `maxBytes`: when all of `deflated` would inflate to more,
 * less of it is taken, so a deflate bomb costs a few bounded tries, not its expansion.
 */
function inflatePrefix(deflated: Uint8Array, maxBytes: number): Buffer {
  for (let take = deflated.length; ; take = Math.floor(take / 4)) {
    try {
      return inflateRawSync(deflated.subarray(0, take), { finishFlush: zlibConstants.Z_SYNC_FLUSH, maxOutputLength: maxBytes });
    } catch (thrown) {
      if ((thrown as { code?: string }).code !== 'ERR_BUFFER_TOO_LARGE' || take < 1024) throw thrown;
    }
  }
}

/**
 * Parses a DICOM file with dicom-parser, handling the layouts and transfer syntaxes its
 * `parseDicom` does not: a file meta group without the preamble, a bare data set, a missing
 * transfer syntax, and deflate with a bound on the inflated size (a few kilobytes of deflate
 * can expand to gigabytes).
 */
export function parseDicomBytes(bytes: Buffer, opts: { maxInflatedBytes: number }): ParsedDicom;
/** With `inflate: false`, a deflated data set is not inflated: the answer is 'deflated'. */
export function parseDicomBytes(bytes: Buffer, opts: { maxInflatedBytes: number; inflate: false }): ParsedDicom | 'deflated';
/**
 * With `inflate: 'prefix'`, `bytes` are the first bytes of a file: a deflated data set is
 * inflated as far as they go, to at most `maxInflatedBytes` (the start of the data set, enough
 * for its header), and parsed as the start of a file.
 */
export function parseDicomBytes(bytes: Buffer, opts: { maxInflatedBytes: number; inflate: 'prefix' }): ParsedDicom;
export function parseDicomBytes(bytes: Buffer, opts: { maxInflatedBytes: number; inflate?: false | 'prefix' }): ParsedDicom | 'deflated' {
  const layout = detectDicomLayout(bytes);
  if (layout === null) throw corrupt('it does not start with a DICOM header.');

  let byteArray: Uint8Array = bytes;
  let position = 0;
  let meta: DataSet | undefined;
  let transferSyntaxUid: string;
  if (layout.kind === 'bare-dataset') {
    transferSyntaxUid = layout.explicitVr ? EXPLICIT_VR_LITTLE_ENDIAN : IMPLICIT_VR_LITTLE_ENDIAN;
  } else {
    if (layout.kind === 'meta-without-preamble') {
      byteArray = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), bytes]);
    }
    ({ meta, position } = readFileMeta(byteArray));
    transferSyntaxUid = readTransferSyntaxUid(meta, byteArray, position);
  }

  let transferSyntax = lookupTransferSyntax(transferSyntaxUid);
  // A native little endian file that declares the wrong VR encoding is a common writer bug;
  // reading it with the other one is what dcmtk and pydicom do too.
  if (
    (transferSyntax.uid === EXPLICIT_VR_LITTLE_ENDIAN || transferSyntax.uid === IMPLICIT_VR_LITTLE_ENDIAN) &&
    position + 8 <= byteArray.length
  ) {
    const explicit = firstElementIsExplicit(byteArray, position);
    if (explicit !== transferSyntax.explicitVr) {
      transferSyntax = {
        ...lookupTransferSyntax(explicit ? EXPLICIT_VR_LITTLE_ENDIAN : IMPLICIT_VR_LITTLE_ENDIAN),
        uid: transferSyntax.uid,
      };
    }
  }

  if (transferSyntax.deflated) {
    if (opts.inflate === false) return 'deflated';
    let inflated: Buffer;
    try {
      inflated =
        opts.inflate === 'prefix'
          ? inflatePrefix(byteArray.subarray(position), opts.maxInflatedBytes)
          : inflateRawSync(byteArray.subarray(position), { maxOutputLength: opts.maxInflatedBytes });
    } catch (thrown) {
      if ((thrown as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new ImageDecodeError(
          'too_large',
          `The deflated DICOM data set expands to more than ${Math.round(opts.maxInflatedBytes / 2 ** 20)} MB.`,
        );
      }
      throw corrupt(`its deflated data set could not be inflated (${describeThrown(thrown)}).`);
    }
    byteArray = Buffer.concat([byteArray.subarray(0, position), inflated]);
  }

  const parser = transferSyntax.littleEndian
    ? dicomParser.littleEndianByteArrayParser
    : dicomParser.bigEndianByteArrayParser;
  const dataSet = new dicomParser.DataSet(parser, byteArray, {});
  dataSet.warnings = [];
  let parseProblem: string | undefined;
  if (position < byteArray.length) {
    try {
      const stream = new dicomParser.ByteStream(parser, byteArray, position);
      dataSet.warnings = stream.warnings;
      if (transferSyntax.explicitVr) {
        dicomParser.parseDicomDataSetExplicit(dataSet, stream, byteArray.length);
      } else {
        dicomParser.parseDicomDataSetImplicit(dataSet, stream, byteArray.length);
      }
    } catch (thrown) {
      // A malformed element, or nesting deep enough to overflow the stack.
      parseProblem = describeThrown(thrown);
    }
  }
  if (meta) {
    // Meta elements keep their little endian parser even when the data set is big endian.
    for (const [tag, element] of Object.entries(meta.elements)) dataSet.elements[tag] = element;
  }
  return { dataSet, transferSyntax, byteArray, ...(parseProblem === undefined ? {} : { parseProblem }) };
}
