import { detectDicomLayout } from './dicom/detect.js';

export type ImageKind = 'jpeg' | 'png' | 'dicom';

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * The kind of image from its magic bytes alone. File names and Content-Type headers are
 * chosen by the uploader and prove nothing, so they are never consulted.
 */
export function sniffImageKind(bytes: Buffer): ImageKind | null {
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) return 'jpeg';
  if (bytes.length >= PNG_SIGNATURE.length && PNG_SIGNATURE.every((byte, i) => bytes[i] === byte)) return 'png';
  if (detectDicomLayout(bytes) !== null) return 'dicom';
  return null;
}
