/**
 * Reading the image size from a compressed codestream before decoding it. A codestream whose
 * size disagrees with the DICOM Rows/Columns is corrupt (or hostile: a tiny file can declare a
 * gigapixel image), so the decoders are never asked to allocate for it.
 */

export interface CodestreamHeader {
  width: number;
  height: number;
  components: number;
  /** Bits per sample (the first component's, for JPEG 2000). */
  precision: number;
  /** The JPEG start-of-frame marker (0xc0-0xcf, 0xf7 for JPEG-LS); 0x51 (SIZ) for JPEG 2000. */
  marker: number;
}

const u16be = (data: Uint8Array, offset: number) => (data[offset]! << 8) | data[offset + 1]!;
const u32be = (data: Uint8Array, offset: number) => u16be(data, offset) * 0x10000 + u16be(data, offset + 2);

const isStartOfFrame = (marker: number) =>
  (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) || marker === 0xf7;

/** The frame header of a JPEG (ITU T.81) or JPEG-LS (T.87) stream, or null if there is none. */
export function readJpegFrameHeader(data: Uint8Array): CodestreamHeader | null {
  if (data.length < 4 || data[0] !== 0xff || data[1] !== 0xd8) return null;
  let offset = 2;
  while (offset + 4 <= data.length) {
    if (data[offset] !== 0xff) return null;
    // Any number of 0xff fill bytes may precede a marker.
    while (offset < data.length && data[offset + 1] === 0xff) offset++;
    const marker = data[offset + 1]!;
    offset += 2;
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) continue; // markers without a segment
    if (marker === 0xd9 || marker === 0xda) return null; // end of image or start of scan before any frame
    if (offset + 2 > data.length) return null;
    const length = u16be(data, offset);
    if (length < 2) return null;
    if (isStartOfFrame(marker)) {
      if (offset + 8 > data.length) return null;
      return {
        marker,
        precision: data[offset + 2]!,
        height: u16be(data, offset + 3),
        width: u16be(data, offset + 5),
        components: data[offset + 7]!,
      };
    }
    offset += length;
  }
  return null;
}

/** The SIZ segment of a JPEG 2000 codestream, also when wrapped in a JP2 file. */
export function readJpeg2000Header(data: Uint8Array): CodestreamHeader | null {
  let start = 0;
  // JP2 signature box: walk the boxes to the contiguous codestream box 'jp2c'.
  if (data.length >= 12 && u32be(data, 0) === 12 && u32be(data, 4) === 0x6a502020) {
    let offset = 0;
    start = -1;
    while (offset + 8 <= data.length) {
      let size = u32be(data, offset);
      const type = u32be(data, offset + 4);
      let header = 8;
      if (size === 1) {
        if (offset + 16 > data.length) return null;
        size = u32be(data, offset + 8) * 2 ** 32 + u32be(data, offset + 12);
        header = 16;
      } else if (size === 0) {
        size = data.length - offset;
      }
      if (type === 0x6a703263) {
        start = offset + header;
        break;
      }
      if (size < header) return null;
      offset += size;
    }
    if (start < 0) return null;
  }
  // SOC then SIZ (T.800 A.5.1): Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz Csiz {Ssiz XRsiz YRsiz}.
  if (start + 4 + 40 > data.length) return null;
  if (u16be(data, start) !== 0xff4f || u16be(data, start + 2) !== 0xff51) return null;
  const siz = start + 4;
  const xsiz = u32be(data, siz + 4);
  const ysiz = u32be(data, siz + 8);
  const xosiz = u32be(data, siz + 12);
  const yosiz = u32be(data, siz + 16);
  const components = u16be(data, siz + 36);
  if (xosiz >= xsiz || yosiz >= ysiz || components === 0) return null;
  const ssiz = data[siz + 38]!;
  return {
    marker: 0x51,
    width: xsiz - xosiz,
    height: ysiz - yosiz,
    components,
    precision: (ssiz & 0x7f) + 1,
  };
}
