/**
 * The transfer syntaxes ImageMedix knows about, and how each one's pixel data is decoded.
 * `native` data is read straight from the bytes; the others go through a codec. Syntaxes
 * marked `unsupported` are named so the error can say what the file is, instead of
 * "unknown encoding".
 */
type PixelEncoding =
  | 'native'
  | 'rle'
  | 'jpeg' // JPEG process 1/2/4 (DCT) or 14 (lossless); the codestream's own SOF marker picks the decoder
  | 'jpeg-ls'
  | 'jpeg-2000'
  | 'unsupported';

export interface TransferSyntax {
  uid: string;
  name: string;
  encoding: PixelEncoding;
  explicitVr: boolean;
  littleEndian: boolean;
  deflated: boolean;
}

export const IMPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2';
export const EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1';
const DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = '1.2.840.10008.1.2.1.99';
const EXPLICIT_VR_BIG_ENDIAN = '1.2.840.10008.1.2.2';

const table: Array<[uid: string, name: string, encoding: PixelEncoding]> = [
  [IMPLICIT_VR_LITTLE_ENDIAN, 'Implicit VR Little Endian', 'native'],
  [EXPLICIT_VR_LITTLE_ENDIAN, 'Explicit VR Little Endian', 'native'],
  [DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, 'Deflated Explicit VR Little Endian', 'native'],
  [EXPLICIT_VR_BIG_ENDIAN, 'Explicit VR Big Endian', 'native'],
  ['1.2.840.10008.1.2.4.50', 'JPEG Baseline (Process 1)', 'jpeg'],
  ['1.2.840.10008.1.2.4.51', 'JPEG Extended (Process 2 & 4)', 'jpeg'],
  ['1.2.840.10008.1.2.4.57', 'JPEG Lossless (Process 14)', 'jpeg'],
  ['1.2.840.10008.1.2.4.70', 'JPEG Lossless (Process 14, Selection Value 1)', 'jpeg'],
  ['1.2.840.10008.1.2.4.80', 'JPEG-LS Lossless', 'jpeg-ls'],
  ['1.2.840.10008.1.2.4.81', 'JPEG-LS Near-Lossless', 'jpeg-ls'],
  ['1.2.840.10008.1.2.4.90', 'JPEG 2000 (Lossless Only)', 'jpeg-2000'],
  ['1.2.840.10008.1.2.4.91', 'JPEG 2000', 'jpeg-2000'],
  ['1.2.840.10008.1.2.5', 'RLE Lossless', 'rle'],
  // Retired JPEG processes: libjpeg-turbo reads progressive streams; the others are named only.
  ['1.2.840.10008.1.2.4.55', 'JPEG Full Progression (retired)', 'jpeg'],
  ['1.2.840.10008.1.2.4.92', 'JPEG 2000 Part 2 Multi-component (Lossless Only)', 'unsupported'],
  ['1.2.840.10008.1.2.4.93', 'JPEG 2000 Part 2 Multi-component', 'unsupported'],
  ['1.2.840.10008.1.2.4.94', 'JPIP Referenced', 'unsupported'],
  ['1.2.840.10008.1.2.4.95', 'JPIP Referenced Deflate', 'unsupported'],
  ['1.2.840.10008.1.2.4.100', 'MPEG2 Main Profile / Main Level', 'unsupported'],
  ['1.2.840.10008.1.2.4.101', 'MPEG2 Main Profile / High Level', 'unsupported'],
  ['1.2.840.10008.1.2.4.102', 'MPEG-4 AVC/H.264 High Profile', 'unsupported'],
  ['1.2.840.10008.1.2.4.103', 'MPEG-4 AVC/H.264 BD-compatible High Profile', 'unsupported'],
  ['1.2.840.10008.1.2.4.104', 'MPEG-4 AVC/H.264 High Profile For 2D Video', 'unsupported'],
  ['1.2.840.10008.1.2.4.105', 'MPEG-4 AVC/H.264 High Profile For 3D Video', 'unsupported'],
  ['1.2.840.10008.1.2.4.106', 'MPEG-4 AVC/H.264 Stereo High Profile', 'unsupported'],
  ['1.2.840.10008.1.2.4.107', 'HEVC/H.265 Main Profile', 'unsupported'],
  ['1.2.840.10008.1.2.4.108', 'HEVC/H.265 Main 10 Profile', 'unsupported'],
  ['1.2.840.10008.1.2.4.110', 'JPEG XL Lossless', 'unsupported'],
  ['1.2.840.10008.1.2.4.111', 'JPEG XL JPEG Recompression', 'unsupported'],
  ['1.2.840.10008.1.2.4.112', 'JPEG XL', 'unsupported'],
  ['1.2.840.10008.1.2.4.201', 'High-Throughput JPEG 2000 (Lossless Only)', 'unsupported'],
  ['1.2.840.10008.1.2.4.202', 'High-Throughput JPEG 2000 with RPCL Options (Lossless Only)', 'unsupported'],
  ['1.2.840.10008.1.2.4.203', 'High-Throughput JPEG 2000', 'unsupported'],
];

const byUid = new Map<string, TransferSyntax>(
  table.map(([uid, name, encoding]) => [
    uid,
    {
      uid,
      name,
      encoding,
      explicitVr: uid !== IMPLICIT_VR_LITTLE_ENDIAN,
      littleEndian: uid !== EXPLICIT_VR_BIG_ENDIAN,
      deflated: uid === DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN || uid === '1.2.840.10008.1.2.4.95',
    },
  ]),
);

/**
 * Every transfer syntax that is not one of the three native ones is explicit VR little endian
 * outside the pixel data (PS3.5 A.4), so even an unknown UID can be parsed far enough to read
 * the patient and study attributes and give a precise error.
 */
export function lookupTransferSyntax(uid: string): TransferSyntax {
  return (
    byUid.get(uid) ?? {
      uid,
      name: `unknown transfer syntax ${uid}`,
      encoding: 'unsupported',
      explicitVr: true,
      littleEndian: true,
      deflated: false,
    }
  );
}
