/**
 * Explanation of a prediction: the class activation map of the predicted class (exactly
 * Grad-CAM for this network's global-average-pool + linear head), drawn over the image, and
 * the bounding box of its hottest region. It shows where the model looked, not a lesion
 * segmentation, and the wording of `tumorLocation` says so.
 */
import sharp from 'sharp';

export interface HotRegion {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Heatmap {
  /** PNG of the heatmap blended over the grayscale image, at the image's size. */
  png: Buffer;
  width: number;
  height: number;
}

export interface Explanation {
  /** Null when rendering was not asked for. */
  heatmap: Heatmap | null;
  /** Box around the hottest connected region, in pixels of the image given; null if the map is flat. */
  hotRegion: HotRegion | null;
}

/** The [h, w] map of one class out of a [K, h, w] activation tensor. */
function classMap(cam: Float32Array, classIndex: number, mapWidth: number, mapHeight: number): Float32Array {
  const size = mapWidth * mapHeight;
  if (cam.length < (classIndex + 1) * size) throw new Error('class activation map is smaller than expected');
  return cam.slice(classIndex * size, (classIndex + 1) * size);
}

/** ReLU, then scale so the maximum is 1; all zeros when nothing is positive. */
export function normaliseMap(map: Float32Array): Float32Array {
  let max = 0;
  for (const v of map) if (v > max) max = v;
  const out = new Float32Array(map.length);
  if (!(max > 0)) return out;
  for (let i = 0; i < map.length; i++) out[i] = Math.max(0, map[i]!) / max;
  return out;
}

/** Bilinear resize with pixel centres aligned (as align_corners=False), edges clamped. */
export function resizeBilinear(src: Float32Array, sw: number, sh: number, dw: number, dh: number): Float32Array {
  const out = new Float32Array(dw * dh);
  const sx = sw / dw;
  const sy = sh / dh;
  const x0s = new Int32Array(dw);
  const x1s = new Int32Array(dw);
  const wxs = new Float32Array(dw);
  for (let x = 0; x < dw; x++) {
    const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), sw - 1);
    x0s[x] = Math.floor(fx);
    x1s[x] = Math.min(x0s[x]! + 1, sw - 1);
    wxs[x] = fx - x0s[x]!;
  }
  for (let y = 0; y < dh; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), sh - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, sh - 1);
    const wy = fy - y0;
    const row0 = y0 * sw;
    const row1 = y1 * sw;
    for (let x = 0; x < dw; x++) {
      const x0 = x0s[x]!;
      const x1 = x1s[x]!;
      const wx = wxs[x]!;
      const top = src[row0 + x0]! * (1 - wx) + src[row0 + x1]! * wx;
      const bottom = src[row1 + x0]! * (1 - wx) + src[row1 + x1]! * wx;
      out[y * dw + x] = top * (1 - wy) + bottom * wy;
    }
  }
  return out;
}

/**
 * Bounding box of the 8-connected region around the peak where the map is at least
 * `threshold` of its maximum. The map is taken at a working resolution of at most 224 px
 * a side and the box is scaled to the image's pixels.
 */
export function findHotRegion(
  map01: Float32Array,
  mapWidth: number,
  mapHeight: number,
  imageWidth: number,
  imageHeight: number,
  threshold = 0.5,
): HotRegion | null {
  const gw = Math.min(imageWidth, 224);
  const gh = Math.min(imageHeight, 224);
  const grid = resizeBilinear(map01, mapWidth, mapHeight, gw, gh);
  let peak = -1;
  let peakValue = 0;
  for (let i = 0; i < grid.length; i++) {
    if (grid[i]! > peakValue) {
      peakValue = grid[i]!;
      peak = i;
    }
  }
  if (peak < 0) return null;
  const cut = peakValue * threshold;
  const seen = new Uint8Array(grid.length);
  const stack = [peak];
  seen[peak] = 1;
  let minX = gw;
  let minY = gh;
  let maxX = -1;
  let maxY = -1;
  while (stack.length > 0) {
    const i = stack.pop()!;
    const x = i % gw;
    const y = (i - x) / gw;
    if (x < minX) minX = x;
    if (x > maxX) maxX = x;
    if (y < minY) minY = y;
    if (y > maxY) maxY = y;
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) {
        const nx = x + dx;
        const ny = y + dy;
        if (nx < 0 || ny < 0 || nx >= gw || ny >= gh) continue;
        const j = ny * gw + nx;
        if (!seen[j] && grid[j]! >= cut) {
          seen[j] = 1;
          stack.push(j);
        }
      }
    }
  }
  const scaleX = imageWidth / gw;
  const scaleY = imageHeight / gh;
  const x = Math.floor(minX * scaleX);
  const y = Math.floor(minY * scaleY);
  return {
    x,
    y,
    width: Math.min(imageWidth, Math.ceil((maxX + 1) * scaleX)) - x,
    height: Math.min(imageHeight, Math.ceil((maxY + 1) * scaleY)) - y,
  };
}

/** Jet colormap (blue -> cyan -> yellow -> red) as a 256-entry RGB table. */
const JET = (() => {
  const lut = new Uint8Array(256 * 3);
  const c = (v: number) => Math.round(255 * Math.min(1, Math.max(0, v)));
  for (let i = 0; i < 256; i++) {
    const t = i / 255;
    lut[i * 3] = c(1.5 - Math.abs(4 * t - 3));
    lut[i * 3 + 1] = c(1.5 - Math.abs(4 * t - 2));
    lut[i * 3 + 2] = c(1.5 - Math.abs(4 * t - 1));
  }
  return lut;
})();

/**
 * Colour the map with jet and blend it over the grayscale image. The opacity grows with the
 * activation, so cold areas keep the anatomy readable under a light tint.
 */
async function renderOverlay(
  map01: Float32Array,
  mapWidth: number,
  mapHeight: number,
  image: { gray: Uint8Array; width: number; height: number },
): Promise<Buffer> {
  const { width, height, gray } = image;
  const heat = resizeBilinear(map01, mapWidth, mapHeight, width, height);
  const out = Buffer.alloc(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const t = Math.min(1, Math.max(0, heat[i]!));
    const k = Math.round(t * 255) * 3;
    const alpha = 0.2 + 0.4 * t;
    const g = gray[i]! * (1 - alpha);
    out[i * 3] = Math.round(g + JET[k]! * alpha);
    out[i * 3 + 1] = Math.round(g + JET[k + 1]! * alpha);
    out[i * 3 + 2] = Math.round(g + JET[k + 2]! * alpha);
  }
  return sharp(out, { raw: { width, height, channels: 3 } }).png({ compressionLevel: 6 }).toBuffer();
}

/** Hot region, and unless `render` is false the heatmap PNG, for one class of a [K, h, w] map tensor. */
export async function explainClass(
  cam: Float32Array,
  classIndex: number,
  mapWidth: number,
  mapHeight: number,
  image: { gray: Uint8Array; width: number; height: number },
  options: { render?: boolean } = {},
): Promise<Explanation> {
  const map01 = normaliseMap(classMap(cam, classIndex, mapWidth, mapHeight));
  const hotRegion = findHotRegion(map01, mapWidth, mapHeight, image.width, image.height);
  if (options.render === false) return { heatmap: null, hotRegion };
  const png = await renderOverlay(map01, mapWidth, mapHeight, image);
  return { heatmap: { png, width: image.width, height: image.height }, hotRegion };
}

/**
 * Plain-words position of the hot region in the slice. The view (axial, coronal, sagittal)
 * of a JPEG is unknown, so the location is given in image terms first; the patient side is
 * added for the usual radiological display of axial and coronal slices, where the patient's
 * left is on the image's right.
 */
export function tumorLocation(box: HotRegion, width: number, height: number): string {
  const cx = (box.x + box.width / 2) / width;
  const cy = (box.y + box.height / 2) / height;
  const vertical = cy < 0.36 ? 'upper' : cy > 0.64 ? 'lower' : 'central';
  const where =
    cx < 0.42
      ? "image left, <v> part of the slice (patient's right if this is an axial or coronal slice in standard radiological display)"
      : cx > 0.58
        ? "image right, <v> part of the slice (patient's left if this is an axial or coronal slice in standard radiological display)"
        : '<v> part of the slice, near the vertical midline';
  return (
    `Approximate: ${where.replace('<v>', vertical)}. ` +
    'Based on model attention; not a segmentation.'
  );
}
