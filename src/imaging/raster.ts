import sharp, { type Metadata, type SharpOptions } from 'sharp';
import { describeThrown, ImageDecodeError, tooLarge } from './errors.js';
import type { RawImage } from './pixels.js';

/** How long libvips may spend on one image before we give up on it. */
const DECODE_TIMEOUT_SECONDS = 30;

const LABEL = { jpeg: 'JPEG', png: 'PNG' } as const;

// 'error' rejects truncated and broken data; 'warning' would also reject the harmless
// oddities many scanners and phones write (extraneous bytes before a marker, and so on).
const SHARP_OPTIONS: SharpOptions = { failOn: 'error', sequentialRead: true };

/** libvips's own words without its wrappers ("Input buffer has corrupt header: VipsJpeg: ..."). */
const decoderWords = (thrown: unknown) =>
  describeThrown(thrown)
    .split('\n')[0]!
    .replace(/^Input buffer has corrupt header:\s*/, '')
    .replace(/\bVips\w*:\s*/g, '')
    .replace(/\.$/, '');

const corrupt = (label: string, thrown: unknown) =>
  new ImageDecodeError('corrupt', `The ${label} file is truncated or corrupt: ${decoderWords(thrown)}.`);

/** The checks a JPEG or PNG header allows: readable, of the kind its bytes claim, a size within `maxPixels`. */
async function readHeader(bytes: Buffer, kind: 'jpeg' | 'png', maxPixels: number): Promise<Metadata & { width: number; height: number }> {
  const label = LABEL[kind];
  let metadata: Metadata;
  try {
    metadata = await sharp(bytes, { ...SHARP_OPTIONS, limitInputPixels: false }).metadata();
  } catch (thrown) {
    throw corrupt(label, thrown);
  }
  if (metadata.format !== kind) {
    throw new ImageDecodeError('corrupt', `The file starts like a ${label} image but is not a readable ${label} file.`);
  }
  const { width, height } = metadata;
  if (!width || !height) throw new ImageDecodeError('corrupt', `The ${label} file does not state its size.`);
  // The header's size is trusted only to refuse early; sharp enforces the same limit itself.
  if (width * height > maxPixels) throw tooLarge(width, height, 1, maxPixels);
  return { ...metadata, width, height };
}

/**
 * The checks of a JPEG or PNG upload that need no decoding, from its first bytes (a large
 * upload streamed to storage): `readHeader`'s, and the size of the image it renders to (EXIF
 * orientation applied). A file whose header runs past `head` fails as corrupt: ask again with
 * more of it. A file that passes may still fail at decoding (truncated or corrupt pixel data).
 */
export async function inspectRaster(head: Buffer, kind: 'jpeg' | 'png', maxPixels: number): Promise<{ width: number; height: number }> {
  return renderedSize(await readHeader(head, kind, maxPixels));
}

/** The size of the image decodeRaster renders from a header: orientations 5-8 (EXIF) turn it a quarter. */
function renderedSize({ width, height, orientation }: { width: number; height: number; orientation?: number | undefined }) {
  return orientation !== undefined && orientation >= 5 ? { width: height, height: width } : { width, height };
}

/** What a failed decode of a JPEG or PNG tells its uploader. */
function decodeFailure(label: string, thrown: unknown, size: { width: number; height: number }, maxPixels: number): ImageDecodeError {
  const message = describeThrown(thrown);
  if (/exceeds pixel limit/i.test(message)) return tooLarge(size.width, size.height, 1, maxPixels);
  // Transient: a busy machine can cause it, so a stored scan's decode is tried again later.
  if (/timeout/i.test(message)) {
    return new ImageDecodeError('corrupt', `The ${label} file could not be decoded in ${DECODE_TIMEOUT_SECONDS} seconds.`, true);
  }
  return corrupt(label, thrown);
}

/**
 * A whole JPEG or PNG upload checked by decoding all of its pixel data, as decodeRaster does,
 * and keeping nothing: a truncated or damaged file fails here just as it would there, with the
 * same message. Cheaper than decodeRaster (no orientation, colour or depth conversion: 1.8
 * against 2.3 ms for a 224 px JPEG, docs/benchmarks/pipeline.md 2026-12-06 13:33). A JPEG is
 * decoded at full scale: a shrink-on-load decode reads the same entropy-coded data but costs
 * more at these sizes (the resize), and a PNG has none. Returns the size the image renders to.
 */
export async function checkRaster(bytes: Buffer, kind: 'jpeg' | 'png', maxPixels: number): Promise<{ width: number; height: number }> {
  const metadata = await readHeader(bytes, kind, maxPixels);
  try {
    await sharp(bytes, { ...SHARP_OPTIONS, limitInputPixels: maxPixels })
      .raw()
      .timeout({ seconds: DECODE_TIMEOUT_SECONDS })
      .toBuffer();
  } catch (thrown) {
    throw decodeFailure(LABEL[kind], thrown, metadata, maxPixels);
  }
  return renderedSize(metadata);
}

/**
 * JPEG or PNG to 8-bit pixels with EXIF orientation applied, decoded once: the display PNG,
 * the thumbnail and the model's input are all made from them. Colour stays colour (the model
 * code does its own grayscale); 16-bit and palette images become 8-bit; transparency is
 * flattened onto black, the background of every radiology viewer.
 */
export async function decodeRaster(bytes: Buffer, kind: 'jpeg' | 'png', maxPixels: number): Promise<RawImage> {
  const options: SharpOptions = { ...SHARP_OPTIONS, limitInputPixels: maxPixels };
  const metadata = await readHeader(bytes, kind, maxPixels);

  const grey = metadata.channels !== undefined && metadata.channels <= 2 && metadata.space !== 'cmyk';
  let pipeline = sharp(bytes, options).autoOrient();
  if (metadata.hasAlpha) pipeline = pipeline.flatten({ background: '#000000' });
  pipeline = pipeline
    .toColourspace(grey ? 'b-w' : 'srgb')
    .raw({ depth: 'uchar' })
    .timeout({ seconds: DECODE_TIMEOUT_SECONDS });
  try {
    const { data, info } = await pipeline.toBuffer({ resolveWithObject: true });
    if (info.channels !== (grey ? 1 : 3)) throw new Error(`decoder gave ${info.channels} channels`);
    return { data, width: info.width, height: info.height, channels: info.channels };
  } catch (thrown) {
    throw decodeFailure(LABEL[kind], thrown, metadata, maxPixels);
  }
}
