import sharp from 'sharp';

/** The pixels of a PNG as stored: one byte per sample, 1 or 3 channels. */
export async function pngPixels(png: Buffer): Promise<{ data: Buffer; width: number; height: number; channels: number }> {
  const meta = await sharp(png).metadata();
  // sharp's raw output of a grayscale PNG is expanded to sRGB unless one channel is extracted.
  const pipeline = meta.channels === 1 ? sharp(png).extractChannel(0) : sharp(png).toColourspace('srgb');
  const { data, info } = await pipeline.raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}
