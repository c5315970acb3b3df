import { deflateRawSync } from 'node:zlib';

/**
 * A deliberately small DICOM writer for tests: it builds the synthetic and deliberately broken
 * files that the shared sample set lacks (signed pixels with a rescale, planar RGB, YBR,
 * oversized headers, deflate bombs...). Not for production: it trusts its input.
 */

type DicomValue = string | number[] | Uint8Array | DicomElement[][];

interface DicomElement {
  /** 0xGGGGEEEE */
  tag: number;
  vr: string;
  value: DicomValue;
}

interface EncapsulatedPixels {
  fragments: Uint8Array[];
  /** Basic Offset Table entries; empty table when absent. */
  offsets?: number[];
}

export interface DicomFileOptions {
  transferSyntaxUid?: string;
  elements: DicomElement[];
  pixelData?: Uint8Array | EncapsulatedPixels;
  /** VR for native pixel data; OW unless given. */
  pixelVr?: 'OB' | 'OW';
  layout?: 'part10' | 'meta-without-preamble' | 'bare-dataset';
  /** Leave (0002,0010) out of the file meta. */
  omitTransferSyntax?: boolean;
}

const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

interface Encoding {
  explicit: boolean;
  littleEndian: boolean;
}

function encodeValue(vr: string, value: DicomValue, enc: Encoding): Buffer {
  if (typeof value === 'string') {
    const buf = Buffer.from(value, 'utf8');
    return buf.length % 2 === 0 ? buf : Buffer.concat([buf, Buffer.from([vr === 'UI' ? 0 : 0x20])]);
  }
  if (value instanceof Uint8Array) {
    const buf = Buffer.from(value);
    return buf.length % 2 === 0 ? buf : Buffer.concat([buf, Buffer.alloc(1)]);
  }
  if (vr === 'SQ') {
    const items = (value as DicomElement[][]).map((item) => {
      const body = Buffer.concat(item.map((e) => encodeElement(e, enc)));
      return Buffer.concat([itemHeader(0xfffee000, body.length, enc), body]);
    });
    return Buffer.concat(items);
  }
  const numbers = value as number[];
  const size = { US: 2, SS: 2, UL: 4, SL: 4, FL: 4, FD: 8, AT: 4 }[vr];
  if (size === undefined) throw new Error(`numbers given for VR ${vr}`);
  const buf = Buffer.alloc(numbers.length * size);
  numbers.forEach((n, i) => {
    const o = i * size;
    const le = enc.littleEndian;
    if (vr === 'US') buf[le ? 'writeUInt16LE' : 'writeUInt16BE'](n, o);
    else if (vr === 'SS') buf[le ? 'writeInt16LE' : 'writeInt16BE'](n, o);
    else if (vr === 'UL' || vr === 'AT') buf[le ? 'writeUInt32LE' : 'writeUInt32BE'](n, o);
    else if (vr === 'SL') buf[le ? 'writeInt32LE' : 'writeInt32BE'](n, o);
    else if (vr === 'FL') buf[le ? 'writeFloatLE' : 'writeFloatBE'](n, o);
    else buf[le ? 'writeDoubleLE' : 'writeDoubleBE'](n, o);
  });
  return buf;
}

function tagBytes(tag: number, enc: Encoding): Buffer {
  const buf = Buffer.alloc(4);
  const group = tag >>> 16;
  const element = tag & 0xffff;
  if (enc.littleEndian) {
    buf.writeUInt16LE(group, 0);
    buf.writeUInt16LE(element, 2);
  } else {
    buf.writeUInt16BE(group, 0);
    buf.writeUInt16BE(element, 2);
  }
  return buf;
}

function itemHeader(tag: number, length: number, enc: Encoding): Buffer {
  const len = Buffer.alloc(4);
  if (enc.littleEndian) len.writeUInt32LE(length >>> 0, 0);
  else len.writeUInt32BE(length >>> 0, 0);
  return Buffer.concat([tagBytes(tag, enc), len]);
}

function header(tag: number, vr: string, length: number, enc: Encoding): Buffer {
  if (!enc.explicit) return itemHeader(tag, length, enc);
  const le = enc.littleEndian;
  if (LONG_VRS.has(vr)) {
    const buf = Buffer.alloc(8);
    buf.write(vr, 0, 'latin1');
    if (le) buf.writeUInt32LE(length >>> 0, 4);
    else buf.writeUInt32BE(length >>> 0, 4);
    return Buffer.concat([tagBytes(tag, enc), buf]);
  }
  const buf = Buffer.alloc(4);
  buf.write(vr, 0, 'latin1');
  if (le) buf.writeUInt16LE(length, 2);
  else buf.writeUInt16BE(length, 2);
  return Buffer.concat([tagBytes(tag, enc), buf]);
}

function encodeElement(element: DicomElement, enc: Encoding): Buffer {
  const value = encodeValue(element.vr, element.value, enc);
  return Buffer.concat([header(element.tag, element.vr, value.length, enc), value]);
}

function encodePixelData(pixels: Uint8Array | EncapsulatedPixels, vr: string, enc: Encoding): Buffer {
  if (pixels instanceof Uint8Array) return encodeElement({ tag: 0x7fe00010, vr, value: pixels }, enc);
  const offsets = pixels.offsets ?? [];
  const table = Buffer.alloc(offsets.length * 4);
  offsets.forEach((o, i) => table.writeUInt32LE(o, i * 4));
  const parts = [header(0x7fe00010, 'OB', 0xffffffff, enc), itemHeader(0xfffee000, table.length, enc), table];
  for (const fragment of pixels.fragments) {
    const data = fragment.length % 2 === 0 ? Buffer.from(fragment) : Buffer.concat([fragment, Buffer.alloc(1)]);
    parts.push(itemHeader(0xfffee000, data.length, enc), data);
  }
  parts.push(itemHeader(0xfffee0dd, 0, enc));
  return Buffer.concat(parts);
}

export function writeDicom(opts: DicomFileOptions): Buffer {
  const ts = opts.transferSyntaxUid ?? EXPLICIT_LE;
  const enc: Encoding = { explicit: ts !== '1.2.840.10008.1.2', littleEndian: ts !== '1.2.840.10008.1.2.2' };
  const elements = [...opts.elements].sort((a, b) => a.tag - b.tag);
  let dataSet = Buffer.concat(elements.map((e) => encodeElement(e, enc)));
  if (opts.pixelData) dataSet = Buffer.concat([dataSet, encodePixelData(opts.pixelData, opts.pixelVr ?? 'OW', enc)]);
  if (ts === '1.2.840.10008.1.2.1.99') dataSet = deflateRawSync(dataSet);
  if (opts.layout === 'bare-dataset') return dataSet;

  const metaEnc: Encoding = { explicit: true, littleEndian: true };
  const metaElements: DicomElement[] = [
    { tag: 0x00020001, vr: 'OB', value: Uint8Array.from([0, 1]) },
    { tag: 0x00020002, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.7' },
    { tag: 0x00020003, vr: 'UI', value: '1.2.3.4.5.6.7' },
    ...(opts.omitTransferSyntax ? [] : [{ tag: 0x00020010, vr: 'UI', value: ts }]),
    { tag: 0x00020012, vr: 'UI', value: '1.2.3.4' },
  ];
  const metaBody = Buffer.concat(metaElements.map((e) => encodeElement(e, metaEnc)));
  const groupLength = encodeElement({ tag: 0x00020000, vr: 'UL', value: [metaBody.length] }, metaEnc);
  const meta = Buffer.concat([groupLength, metaBody]);
  if (opts.layout === 'meta-without-preamble') return Buffer.concat([meta, dataSet]);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), meta, dataSet]);
}

export interface SyntheticImage {
  rows: number;
  columns: number;
  /** Stored values, pixel-interleaved for colour (or as laid out when `planar`). */
  values: ArrayLike<number>;
  bitsAllocated?: 8 | 16 | 32;
  bitsStored?: number;
  highBit?: number;
  signed?: boolean;
  photometric?: string;
  samplesPerPixel?: 1 | 3;
  planar?: boolean;
  frames?: number;
  extra?: DicomElement[];
  transferSyntaxUid?: string;
  layout?: DicomFileOptions['layout'];
}

/** Image attributes plus native pixel data built from `values`, in the transfer syntax's byte order. */
export function syntheticImage(image: SyntheticImage): Buffer {
  const bitsAllocated = image.bitsAllocated ?? 16;
  const spp = image.samplesPerPixel ?? 1;
  const bigEndian = image.transferSyntaxUid === '1.2.840.10008.1.2.2';
  const bytes = bitsAllocated / 8;
  const data = Buffer.alloc(image.values.length * bytes);
  for (let i = 0; i < image.values.length; i++) {
    const v = image.values[i]!;
    const o = i * bytes;
    if (bytes === 1) data[o] = v & 0xff;
    else if (bytes === 2) data[bigEndian ? 'writeUInt16BE' : 'writeUInt16LE'](v & 0xffff, o);
    else data[bigEndian ? 'writeUInt32BE' : 'writeUInt32LE'](v >>> 0, o);
  }
  const elements: DicomElement[] = [
    { tag: 0x00080016, vr: 'UI', value: '1.2.840.10008.5.1.4.1.1.7' },
    { tag: 0x00080018, vr: 'UI', value: '1.2.3.4.5.6.7' },
    { tag: 0x00080060, vr: 'CS', value: 'OT' },
    { tag: 0x00280002, vr: 'US', value: [spp] },
    { tag: 0x00280004, vr: 'CS', value: image.photometric ?? (spp === 3 ? 'RGB' : 'MONOCHROME2') },
    { tag: 0x00280010, vr: 'US', value: [image.rows] },
    { tag: 0x00280011, vr: 'US', value: [image.columns] },
    { tag: 0x00280100, vr: 'US', value: [bitsAllocated] },
    { tag: 0x00280101, vr: 'US', value: [image.bitsStored ?? bitsAllocated] },
    { tag: 0x00280102, vr: 'US', value: [image.highBit ?? (image.bitsStored ?? bitsAllocated) - 1] },
    { tag: 0x00280103, vr: 'US', value: [image.signed ? 1 : 0] },
    ...(spp === 3 ? [{ tag: 0x00280006, vr: 'US', value: [image.planar ? 1 : 0] }] : []),
    ...(image.frames !== undefined ? [{ tag: 0x00280008, vr: 'IS', value: String(image.frames) }] : []),
  ];
  const extraTags = new Set((image.extra ?? []).map((e) => e.tag));
  return writeDicom({
    transferSyntaxUid: image.transferSyntaxUid,
    layout: image.layout,
    elements: [...elements.filter((e) => !extraTags.has(e.tag)), ...(image.extra ?? [])],
    pixelData: data,
    pixelVr: bitsAllocated === 8 ? 'OB' : 'OW',
  });
}
