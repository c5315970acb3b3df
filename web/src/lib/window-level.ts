/**
 * Window/level of a DICOM's original pixel values (modality values after rescale): the linear
 * VOI function of DICOM PS3.3 C.11.2.1.2, into 8-bit grey. Pure, so it is tested under node.
 */

export interface Window {
  center: number;
  width: number;
}

export interface ModalityPixels {
  data: Int16Array | Float32Array;
  min: number;
  max: number;
  /** MONOCHROME1: high values are dark. */
  invert: boolean;
}

/** The grey level (0..255) of modality value `v` under window `win`. */
export function windowValue(v: number, win: Window, invert = false): number {
  const c = win.center - 0.5;
  const w = Math.max(1, win.width - 1);
  let y = v <= c - w / 2 ? 0 : v > c + w / 2 ? 255 : ((v - c) / w + 0.5) * 255;
  if (invert) y = 255 - y;
  return y;
}

/**
 * A lookup table over the integer range min..max: entry `v - min` is the grey of value v.
 * For int16 data one table lookup per pixel replaces the arithmetic (a 12-bit CT is 4096
 * entries, against millions of pixels).
 */
export function windowLut(min: number, max: number, win: Window, invert = false): Uint8ClampedArray {
  const lut = new Uint8ClampedArray(Math.max(0, max - min + 1));
  for (let i = 0; i < lut.length; i++) lut[i] = windowValue(i + min, win, invert);
  return lut;
}

/** Writes the windowed image as opaque grey RGBA into `out` (4 bytes a pixel). */
export function applyWindow(pixels: ModalityPixels, win: Window, out: Uint8ClampedArray): void {
  const { data, invert } = pixels;
  if (out.length < data.length * 4) throw new RangeError('output too small for the image');
  const put = (j: number, g: number) => {
    out[j] = g;
    out[j + 1] = g;
    out[j + 2] = g;
    out[j + 3] = 255;
  };
  if (data instanceof Int16Array) {
    const lut = windowLut(pixels.min, pixels.max, win, invert);
    // Values outside min..max (the server's min/max are exact, but be safe) clamp to the ends.
    const last = lut.length - 1;
    for (let i = 0; i < data.length; i++) put(i * 4, lut[Math.min(last, Math.max(0, data[i]! - pixels.min))]!);
  } else {
    for (let i = 0; i < data.length; i++) put(i * 4, Math.round(windowValue(data[i]!, win, invert)));
  }
}

/**
 * The window after a drag of (dx, dy) screen pixels from `start`, as on a PACS: a horizontal
 * drag widens the window, a vertical drag moves its centre; 300 px cover the value range.
 */
export function dragWindow(start: Window, dx: number, dy: number, range: number): Window {
  const r = Math.max(1, range);
  return { width: Math.max(1, start.width + (dx / 300) * r), center: start.center - (dy / 300) * r };
}
