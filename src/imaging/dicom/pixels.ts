import type { DataSet, Element } from 'dicom-parser';
import { ImageDecodeError, tooLarge } from '../errors.js';
import {
  CodecError,
  decodeJpeg2000,
  decodeJpeg12,
  decodeJpegBaseline,
  decodeJpegLossless,
  decodeJpegLs,
  type DecodedFrame,
} from './codecs.js';
import { readJpeg2000Header, readJpegFrameHeader, type CodestreamHeader } from './codestream-header.js';
import { firstEncapsulatedFrame, TruncatedError } from './frames.js';
import { readDicomInfo, type DicomInfo } from './info.js';
import { parseDicomBytes, type ParsedDicom } from './parse.js';
import { decodeRleFrame } from './rle.js';
import type { TransferSyntax } from './transfer-syntax.js';
import { element, firstString, numbers, textDecoder, uint16 } from './values.js';

/** The first frame's stored pixel values, before any rescale or window. */
export interface DicomPixels {
  rows: number;
  columns: number;
  samplesPerPixel: 1 | 3;
  /**
   * What `pixels` hold: MONOCHROME1, MONOCHROME2, RGB or YBR_FULL. It differs from the file's
   * attribute where decoding already converted colour (JPEG YCbCr, JPEG 2000 RCT/ICT, 4:2:2).
   */
  photometricInterpretation: string;
  /** Significant bits per sample; values are masked to these and sign-extended when `signed`. */
  bitsStored: number;
  signed: boolean;
  /** Samples pixel by pixel (R, G, B, R, ... for colour), row by row. */
  pixels: Int32Array | Float64Array;
}

interface ImageAttributes {
  rows: number;
  columns: number;
  samplesPerPixel: 1 | 3;
  bitsAllocated: 8 | 16 | 32;
  bitsStored: number;
  highBit: number;
  signed: boolean;
  photometric: string;
  planar: boolean;
  numberOfFrames: number;
}

export const DEFAULT_MAX_PIXELS = 50_000_000;

const corrupt = (detail: string) => new ImageDecodeError('corrupt', `The DICOM file is corrupt: ${detail}`);
const unsupported = (detail: string) => new ImageDecodeError('unsupported_encoding', detail);

const MONOCHROME = new Set(['MONOCHROME1', 'MONOCHROME2']);

function readImageAttributes(dataSet: DataSet, transferSyntax: TransferSyntax): ImageAttributes {
  const decode = textDecoder(dataSet);
  const rows = uint16(dataSet, 'x00280010');
  const columns = uint16(dataSet, 'x00280011');
  const pixelData = dataSet.elements.x7fe00010;
  if (!pixelData) {
    if (dataSet.elements.x7fe00008 || dataSet.elements.x7fe00009) {
      throw unsupported('This DICOM file holds floating-point pixel data (a parametric map), which cannot be shown as an image.');
    }
    throw new ImageDecodeError('corrupt', 'The DICOM file contains no image: it has no Pixel Data.');
  }
  if (!rows || !columns) {
    throw corrupt('it has pixel data but no valid Rows and Columns attributes.');
  }
  const spp = uint16(dataSet, 'x00280002') ?? 1;
  if (spp !== 1 && spp !== 3) throw unsupported(`DICOM images with ${spp} samples per pixel are not supported.`);
  const bitsAllocated = uint16(dataSet, 'x00280100');
  if (bitsAllocated === undefined) throw corrupt('it has no Bits Allocated attribute.');
  if (bitsAllocated !== 8 && bitsAllocated !== 16 && bitsAllocated !== 32) {
    throw unsupported(`DICOM images with ${bitsAllocated} bits allocated per sample are not supported.`);
  }
  const bitsStored = uint16(dataSet, 'x00280101') ?? bitsAllocated;
  const highBit = uint16(dataSet, 'x00280102') ?? bitsStored - 1;
  if (bitsStored < 1 || bitsStored > bitsAllocated || highBit < bitsStored - 1 || highBit >= bitsAllocated) {
    throw corrupt(`its Bits Stored (${bitsStored}) and High Bit (${highBit}) do not fit Bits Allocated (${bitsAllocated}).`);
  }
  const signed = uint16(dataSet, 'x00280103') === 1;
  // Writers that omit the attribute mean the obvious one for the sample count.
  const photometric = (firstString(dataSet, 'x00280004', decode) ?? (spp === 1 ? 'MONOCHROME2' : 'RGB')).toUpperCase();
  const compressedColour = transferSyntax.encoding === 'jpeg' || transferSyntax.encoding === 'jpeg-2000';
  const colourOk =
    photometric === 'RGB' ||
    photometric === 'YBR_FULL' ||
    photometric === 'YBR_FULL_422' ||
    (compressedColour && ['YBR_RCT', 'YBR_ICT', 'YBR_PARTIAL_420', 'YBR_PARTIAL_422'].includes(photometric));
  if (photometric === 'PALETTE COLOR') {
    throw unsupported('Palette colour DICOM images are not supported.');
  }
  const monochrome = MONOCHROME.has(photometric);
  if (!monochrome && !colourOk) {
    throw unsupported(`DICOM images with Photometric Interpretation ${photometric} are not supported.`);
  }
  if (monochrome !== (spp === 1)) {
    throw corrupt(`its Photometric Interpretation ${photometric} does not match its ${spp} sample(s) per pixel.`);
  }
  const framesValue = numbers(dataSet, 'x00280008')[0];
  const numberOfFrames = element(dataSet, 'x00280008') ? framesValue : 1;
  if (numberOfFrames === undefined || !Number.isInteger(numberOfFrames) || numberOfFrames < 1) {
    throw corrupt('its Number of Frames is not a positive whole number.');
  }
  return {
    rows,
    columns,
    samplesPerPixel: spp,
    bitsAllocated,
    bitsStored,
    highBit,
    signed,
    photometric,
    planar: spp === 3 && uint16(dataSet, 'x00280006') === 1,
    numberOfFrames,
  };
}

interface SampleSource {
  data: Uint8Array;
  bytesPerSample: 1 | 2 | 4;
  littleEndian: boolean;
  planar: boolean;
  /** Bits the stored value is shifted up by inside its word (High Bit + 1 - Bits Stored). */
  shift: number;
  /** What the stored values now represent (see DicomPixels). */
  photometric: string;
  /** Precision the codec reported, for compressed data. */
  codecBits?: number;
}

function unpackSamples(source: SampleSource, count: number, spp: number, bitsStored: number, signed: boolean) {
  const { data, bytesPerSample, littleEndian, planar, shift } = source;
  const total = count * spp;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const read =
    bytesPerSample === 1
      ? (i: number) => data[i]!
      : bytesPerSample === 2
        ? (i: number) => view.getUint16(i * 2, littleEndian)
        : (i: number) => view.getUint32(i * 4, littleEndian);
  const unsigned32 = bitsStored === 32 && !signed;
  const out = unsigned32 ? new Float64Array(total) : new Int32Array(total);
  const mask = bitsStored >= 32 ? 0xffffffff : 2 ** bitsStored - 1;
  const extend = 32 - bitsStored;
  for (let s = 0; s < spp; s++) {
    for (let p = 0; p < count; p++) {
      const raw = read(planar ? s * count + p : p * spp + s);
      let value = bitsStored >= 32 ? raw : (raw >>> shift) & mask;
      if (signed) value = (value << extend) >> extend;
      else if (unsigned32) value = value >>> 0;
      out[p * spp + s] = value;
    }
  }
  return out;
}

/** Native YBR_FULL_422 stores Y1 Y2 Cb Cr for each pair of pixels (PS3.3 C.7.6.3.1.2). */
function expandYbr422(data: Uint8Array, rows: number, columns: number, bytesPerSample: number): Uint8Array {
  if (columns % 2 !== 0) throw corrupt('YBR_FULL_422 pixel data needs an even number of columns.');
  const out = new Uint8Array(rows * columns * 3 * bytesPerSample);
  const b = bytesPerSample;
  for (let pair = 0; pair < (rows * columns) / 2; pair++) {
    const src = pair * 4 * b;
    const dst = pair * 6 * b;
    const copy = (from: number, to: number) => out.set(data.subarray(src + from * b, src + (from + 1) * b), dst + to * b);
    copy(0, 0);
    copy(2, 1);
    copy(3, 2);
    copy(1, 3);
    copy(2, 4);
    copy(3, 5);
  }
  return out;
}

/** The checks of uncompressed pixel data that need no decoding: present, whole, big enough. Returns the frame's size. */
function checkNativeFrame(
  parsed: ParsedDicom,
  pixelData: Element,
  image: ImageAttributes,
  /** The whole file's length in `parsed.byteArray`'s offsets, when that holds only its first bytes. */
  fileBytes = parsed.byteArray.length,
): number {
  if (pixelData.encapsulatedPixelData || pixelData.length === 0xffffffff) {
    throw corrupt(`its pixel data is compressed although the transfer syntax (${parsed.transferSyntax.name}) is uncompressed.`);
  }
  const bytesPerSample = image.bitsAllocated / 8;
  const subsampled = image.photometric === 'YBR_FULL_422';
  const frameBytes = image.rows * image.columns * (subsampled ? 2 : image.samplesPerPixel) * bytesPerSample;
  const available = fileBytes - pixelData.dataOffset;
  if (pixelData.length > available) {
    throw corrupt(
      `it is truncated: its pixel data should be ${pixelData.length} bytes but only ${Math.max(0, available)} are present.`,
    );
  }
  if (pixelData.length < frameBytes) {
    throw corrupt(`its pixel data holds ${pixelData.length} bytes but a ${image.columns}x${image.rows} frame needs ${frameBytes}.`);
  }
  return frameBytes;
}

function nativeFrame(parsed: ParsedDicom, pixelData: Element, image: ImageAttributes): SampleSource {
  const frameBytes = checkNativeFrame(parsed, pixelData, image);
  const bytesPerSample = (image.bitsAllocated / 8) as 1 | 2 | 4;
  const subsampled = image.photometric === 'YBR_FULL_422';
  let data: Uint8Array = parsed.byteArray.subarray(pixelData.dataOffset, pixelData.dataOffset + frameBytes);
  const littleEndian = parsed.transferSyntax.littleEndian;
  if (!littleEndian && bytesPerSample === 1 && pixelData.vr === 'OW') {
    // Big endian OW swaps each pair of 8-bit samples.
    const swapped = new Uint8Array(data.length);
    for (let i = 0; i + 1 < data.length; i += 2) {
      swapped[i] = data[i + 1]!;
      swapped[i + 1] = data[i]!;
    }
    data = swapped;
  }
  if (subsampled) {
    data = expandYbr422(data, image.rows, image.columns, bytesPerSample);
    return { data, bytesPerSample, littleEndian, planar: false, shift: image.highBit + 1 - image.bitsStored, photometric: 'YBR_FULL' };
  }
  return {
    data,
    bytesPerSample,
    littleEndian,
    planar: image.planar,
    shift: image.highBit + 1 - image.bitsStored,
    photometric: image.photometric,
  };
}

function checkCodestream(header: CodestreamHeader | null, image: ImageAttributes, what: string): CodestreamHeader {
  if (!header) throw corrupt(`its ${what} data has no readable image header.`);
  if (header.width !== image.columns || header.height !== image.rows || header.components !== image.samplesPerPixel) {
    throw corrupt(
      `its ${what} data is a ${header.width}x${header.height} image with ${header.components} component(s), ` +
        `but the DICOM header describes ${image.columns}x${image.rows} with ${image.samplesPerPixel}.`,
    );
  }
  return header;
}

/** The first frame's compressed bytes, checked to be whole. */
function encapsulatedFrame(parsed: ParsedDicom, pixelData: Element, image: ImageAttributes): Uint8Array {
  if (!pixelData.encapsulatedPixelData) {
    throw corrupt(`its transfer syntax (${parsed.transferSyntax.name}) is compressed but its pixel data is not.`);
  }
  try {
    return firstEncapsulatedFrame(parsed.dataSet, pixelData, {
      numberOfFrames: image.numberOfFrames,
      oneFragmentPerFrame: parsed.transferSyntax.encoding === 'rle',
    });
  } catch (thrown) {
    throw corrupt(`${(thrown as Error).message}.`);
  }
}

async function compressedFrame(
  parsed: ParsedDicom,
  pixelData: Element,
  image: ImageAttributes,
): Promise<SampleSource> {
  const encoding = parsed.transferSyntax.encoding;
  const frame = encapsulatedFrame(parsed, pixelData, image);

  const fromCodec = (decoded: DecodedFrame, photometric: string): SampleSource => {
    if (decoded.width !== image.columns || decoded.height !== image.rows || decoded.components !== image.samplesPerPixel) {
      throw corrupt('the decoded image does not have the size given in the DICOM header.');
    }
    return {
      data: decoded.data,
      bytesPerSample: decoded.bytesPerSample,
      littleEndian: true,
      planar: decoded.planar,
      shift: 0,
      photometric,
      codecBits: decoded.bitsPerSample,
    };
  };
  const colourAfterCodec = (convertsToRgb: boolean) =>
    image.samplesPerPixel === 3 && (convertsToRgb || image.photometric === 'YBR_RCT' || image.photometric === 'YBR_ICT')
      ? 'RGB'
      : image.photometric;

  try {
    switch (encoding) {
      case 'rle': {
        const data = decodeRleFrame(frame, {
          rows: image.rows,
          columns: image.columns,
          samplesPerPixel: image.samplesPerPixel,
          bytesPerSample: image.bitsAllocated / 8,
        });
        return {
          data,
          bytesPerSample: (image.bitsAllocated / 8) as 1 | 2 | 4,
          littleEndian: true,
          planar: false,
          shift: image.highBit + 1 - image.bitsStored,
          photometric: image.photometric,
        };
      }
      case 'jpeg': {
        const header = checkCodestream(readJpegFrameHeader(frame), image, 'JPEG');
        if (header.marker === 0xc3) {
          if (header.components > 1 && header.precision > 8) {
            throw unsupported('Colour JPEG Lossless DICOM images with more than 8 bits per sample are not supported.');
          }
          return fromCodec(decodeJpegLossless(frame, header), image.photometric);
        }
        if (header.marker === 0xf7) return fromCodec(await decodeJpegLs(frame), image.photometric);
        if (header.marker === 0xc0 || header.marker === 0xc1 || header.marker === 0xc2) {
          if (header.precision === 12 && header.components === 1) {
            return fromCodec(
              await decodeJpeg12(frame, header, { bitsStored: image.bitsStored, pixelRepresentation: image.signed ? 1 : 0 }),
              image.photometric,
            );
          }
          if (header.precision !== 8) {
            throw unsupported(
              `This DICOM file is compressed with ${header.precision}-bit ${header.components > 1 ? 'colour ' : ''}lossy JPEG (${parsed.transferSyntax.name}), ` +
                'which ImageMedix cannot decode. Please export it uncompressed or with lossless compression.',
            );
          }
          return fromCodec(await decodeJpegBaseline(frame), colourAfterCodec(true));
        }
        throw unsupported(
          `This DICOM file uses a JPEG process (SOF marker 0x${header.marker.toString(16)}) that is not supported.`,
        );
      }
      case 'jpeg-ls': {
        checkCodestream(readJpegFrameHeader(frame), image, 'JPEG-LS');
        return fromCodec(await decodeJpegLs(frame), image.photometric);
      }
      case 'jpeg-2000': {
        checkCodestream(readJpeg2000Header(frame), image, 'JPEG 2000');
        return fromCodec(await decodeJpeg2000(frame), colourAfterCodec(false));
      }
      case 'native':
      case 'unsupported':
        throw new Error(`unexpected encoding ${encoding}`);
    }
  } catch (thrown) {
    if (thrown instanceof CodecError) {
      throw corrupt(`its compressed pixel data could not be decoded (${thrown.message}).`);
    }
    if (thrown instanceof TruncatedError || (thrown instanceof Error && !(thrown instanceof ImageDecodeError))) {
      throw corrupt(`its compressed pixel data could not be decoded (${thrown.message}).`);
    }
    throw thrown;
  }
}

export interface DecodedDicom {
  parsed: ParsedDicom;
  info: DicomInfo;
  pixels: DicomPixels;
}

interface CheckedDicom {
  parsed: ParsedDicom;
  info: DicomInfo;
  image: ImageAttributes;
  pixelData: Element;
}

/** Everything that can be known of the image without decoding its pixels, checked. */
function checkDicom(parsed: ParsedDicom, opts: { maxPixels: number }): CheckedDicom {
  const { dataSet, transferSyntax } = parsed;
  const info = readDicomInfo(dataSet, transferSyntax.uid);
  const pixelData = dataSet.elements.x7fe00010;
  // dicom-parser stops at the first malformed element. If Pixel Data was read, the problem lies
  // at or after it, and the frame checks below decide whether the image is whole.
  if (parsed.parseProblem !== undefined && !pixelData) {
    throw corrupt(`it could not be parsed (${parsed.parseProblem}).`);
  }
  const image = readImageAttributes(dataSet, transferSyntax);
  // Pixel count is checked before anything is decoded or allocated. Only the first frame is
  // ever decoded, so the limit is per frame: a long series is bounded by the upload size.
  if (image.rows * image.columns > opts.maxPixels) {
    throw tooLarge(image.columns, image.rows, 1, opts.maxPixels);
  }
  if (transferSyntax.encoding === 'unsupported') {
    throw unsupported(
      `This DICOM file uses ${transferSyntax.name} (${transferSyntax.uid}), which ImageMedix cannot decode. ` +
        'Please export it uncompressed or with JPEG Lossless, JPEG-LS, JPEG 2000 or RLE compression.',
    );
  }
  return { parsed, info, image, pixelData: pixelData! };
}

/** Inflated data sets hold the pixels plus headers; a frame-count-sized bound suffices. */
const maxInflatedBytes = (maxPixels: number) => maxPixels * 4 + 16 * 2 ** 20;

export interface InspectedDicom {
  info: DicomInfo;
  /** The size of the image it renders to (the first frame's Columns and Rows). */
  width: number;
  height: number;
}

/**
 * The checks of an upload that need no pixel decoding: the header parses, the image
 * attributes make sense and fit `maxPixels`, the transfer syntax is one we decode, the pixel
 * data is present and whole, and a compressed frame's own header agrees with the DICOM
 * header. Cheap (no pixel is decoded or copied), so it can run on the event loop; a file that
 * passes may still fail at decoding. Returns 'deflated' for a deflated data set, which must
 * be inflated first (a bounded but possibly long job): inspect it with decodeDicom off the
 * event loop instead.
 */
export function inspectDicom(bytes: Buffer, opts: { maxPixels: number }): InspectedDicom | 'deflated' {
  const parsed = parseDicomBytes(bytes, { maxInflatedBytes: maxInflatedBytes(opts.maxPixels), inflate: false });
  if (parsed === 'deflated') return 'deflated';
  const { info, image, pixelData } = checkDicom(parsed, opts);
  if (parsed.transferSyntax.encoding === 'native') {
    checkNativeFrame(parsed, pixelData, image);
  } else {
    const frame = encapsulatedFrame(parsed, pixelData, image);
    const encoding = parsed.transferSyntax.encoding;
    if (encoding === 'jpeg-2000') checkCodestream(readJpeg2000Header(frame), image, 'JPEG 2000');
    else if (encoding === 'jpeg-ls') checkCodestream(readJpegFrameHeader(frame), image, 'JPEG-LS');
    else if (encoding === 'jpeg') checkCodestream(readJpegFrameHeader(frame), image, 'JPEG');
  }
  return { info, width: image.columns, height: image.rows };
}

/** Parses the file and decodes the first frame to stored values; the shared core of rendering. */
export async function decodeDicom(bytes: Buffer, opts: { maxPixels: number }): Promise<DecodedDicom> {
  const parsed = parseDicomBytes(bytes, { maxInflatedBytes: maxInflatedBytes(opts.maxPixels) });
  const { info, image, pixelData } = checkDicom(parsed, opts);
  const source =
    parsed.transferSyntax.encoding === 'native'
      ? nativeFrame(parsed, pixelData, image)
      : await compressedFrame(parsed, pixelData, image);
  // A codec's own precision wins over a smaller Bits Stored for unsigned data, so values the
  // file really holds are not masked away; signed data keeps Bits Stored for sign extension.
  const codecBits = source.codecBits;
  const bitsStored =
    codecBits !== undefined && !image.signed && codecBits > image.bitsStored ? codecBits : image.bitsStored;
  const pixels = unpackSamples(source, image.rows * image.columns, image.samplesPerPixel, bitsStored, image.signed);
  return {
    parsed,
    info,
    pixels: {
      rows: image.rows,
      columns: image.columns,
      samplesPerPixel: image.samplesPerPixel,
      photometricInterpretation: source.photometric,
      bitsStored,
      signed: image.signed,
      pixels,
    },
  };
}

/**
 * The first frame's stored pixel values, exactly as the file encodes them (lossless syntaxes
 * give identical arrays), with the file's attributes.
 */
export async function decodeDicomPixels(
  bytes: Buffer,
  opts: { maxPixels?: number } = {},
): Promise<DicomPixels & { info: DicomInfo }> {
  const { info, pixels } = await decodeDicom(bytes, { maxPixels: opts.maxPixels ?? DEFAULT_MAX_PIXELS });
  return { ...pixels, info };
}

/**
 * inspectDicom for a file of `fileBytes` bytes of which only the first ones, `head`, are at
 * hand (a large upload streamed to storage), without reading the rest:
 * - uncompressed pixel data is checked against the file's size, as inspectDicom does;
 * - compressed pixel data: the fragments the head lists must fit in the file, and the first
 *   frame's codestream header must agree with the DICOM header; the fragments after the head
 *   are not walked (a truncated later fragment is found when the worker decodes the image);
 * - a deflated data set is inflated as far as the head goes, for its header; whether its pixel
 *   data is whole is found when the worker inflates it.
 * 'longer-head' when the head ends before the checks could be made (a header longer than it):
 * ask again with more of the file.
 */
export function inspectDicomHead(head: Buffer, fileBytes: number, opts: { maxPixels: number }): InspectedDicom | 'longer-head' {
  let parsed = parseDicomBytes(head, { maxInflatedBytes: maxInflatedBytes(opts.maxPixels), inflate: false });
  const deflated = parsed === 'deflated';
  // The header of a deflated data set is in its first inflated bytes; a bounded prefix of them.
  if (parsed === 'deflated') parsed = parseDicomBytes(head, { maxInflatedBytes: HEAD_INFLATED_BYTES, inflate: 'prefix' });
  const pixelData = parsed.dataSet.elements.x7fe00010;
  if (!pixelData) return 'longer-head';
  const { info, image } = checkDicom(parsed, opts);
  const inspected = { info, width: image.columns, height: image.rows };
  if (deflated) return inspected;
  // A file without a preamble is parsed with one put in front: offsets are shifted by it.
  const fileEnd = fileBytes + parsed.byteArray.length - head.length;
  const encoding = parsed.transferSyntax.encoding;
  if (encoding === 'native' || encoding === 'unsupported') {
    checkNativeFrame(parsed, pixelData, image, fileEnd);
    return inspected;
  }
  if (!pixelData.encapsulatedPixelData) {
    throw corrupt(`its transfer syntax (${parsed.transferSyntax.name}) is compressed but its pixel data is not.`);
  }
  const fragments = pixelData.fragments ?? [];
  const first = fragments[0];
  if (!first) return 'longer-head';
  for (const fragment of fragments) {
    if (fragment.position + fragment.length > fileEnd) {
      throw corrupt(
        `the compressed pixel data is truncated: a fragment needs ${fragment.length} bytes but only ${Math.max(0, fileEnd - fragment.position)} remain.`,
      );
    }
  }
  if (encoding === 'rle') return inspected;
  // The codestream header opens the first fragment; a fragment cut by the head's end may still
  // hold it whole.
  const bytes = parsed.byteArray;
  const frame = bytes.subarray(first.position, Math.min(first.position + first.length, bytes.length));
  const cut = first.position + first.length > bytes.length;
  const header = encoding === 'jpeg-2000' ? readJpeg2000Header(frame) : readJpegFrameHeader(frame);
  if (!header && cut) return 'longer-head';
  checkCodestream(header, image, encoding === 'jpeg-2000' ? 'JPEG 2000' : encoding === 'jpeg-ls' ? 'JPEG-LS' : 'JPEG');
  return inspected;
}

/** How much of a deflated data set is inflated to read its header from the start of a file. */
const HEAD_INFLATED_BYTES = 16 * 2 ** 20;
