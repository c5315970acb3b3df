/**
 * A decoded display image's pixels and the PNGs made from them. An image is decoded once, in
 * a decoder thread; its display PNG, its thumbnail and (in the worker) the model's input all
 * start from these pixels instead of decoding a PNG again.
 */
import sharp from 'sharp';

/** 8-bit pixels, interleaved: one channel (grayscale) or three (sRGB), no alpha. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

/**
 * zlib level of the display PNG and thumbnail. Level 1 encodes a 224 px image in a third of
 * level 6's time (0.7 against 1.7 ms) for a file about a third larger (47 against 36 KB):
 * the image is encoded on every upload and stored once, the difference in bytes is small at
 * these sizes, and the pixels are the same (PNG is lossless).
 */
const PNG_COMPRESSION_LEVEL = 1;

function rawInput(image: RawImage) {
  const { data, width, height, channels } = image;
  // Without an explicit colourspace sharp writes one-channel raw input as an RGB PNG.
  return sharp(data, { raw: { width, height, channels } }).toColourspace(channels === 1 ? 'b-w' : 'srgb');
}

export function encodePng(image: RawImage): Promise<Buffer> {
  return rawInput(image).png({ compressionLevel: PNG_COMPRESSION_LEVEL }).toBuffer();
}

/**
 * A PNG at most `px` on its longer side, never enlarged: an image already within that size is
 * its own thumbnail (`png`, the same bytes).
 */
export function thumbnailPng(image: RawImage, px: number, png: Buffer): Promise<Buffer> {
  if (image.width <= px && image.height <= px) return Promise.resolve(png);
  return rawInput(image)
    .resize(px, px, { fit: 'inside', withoutEnlargement: true })
    .png({ compressionLevel: PNG_COMPRESSION_LEVEL })
    .toBuffer();
}
