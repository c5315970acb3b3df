/**
 * Explanation of a prediction: the class activation map of the predicted class (exactly
 * Grad-CAM for this network's global-average-pool + linear head), drawn over the image, and
 * the bounding box of its hottest region. It shows where the model looked, not a lesion
 * segmentation, and the wording of `tumorLocation` says so.
 */
import { encodePlainPng } from '../imaging/png.js';

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

/**
 * The explained class's activation map, normalised to [0, 1] (ReLU, then divided by its
 * maximum), at the network's map size (7 x 7 for the 224 px models). Kept with the analysis:
 * the heatmap PNG is drawn from it and the display image on its first read (src/scans/heatmaps.ts).
 * The values are float32s held as numbers, so they come back from JSON exactly.
 */
export interface HeatmapMap {
  width: number;
  height: number;
  values: number[];
}

export interface Explanation {
  /** Null when rendering was not asked for. */
  heatmap: Heatmap | null;
  map: HeatmapMap;
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

/**
 * Bilinear resize with pixel centres aligned (as align_corners=False), edges clamped. Done in
 * two passes (each source row across, then down), which gives the same values as the direct
 * formula with a third of its reads.
 */
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
  const rows = new Float64Array(sh * dw);
  for (let r = 0; r < sh; r++) {
    const from = r * sw;
    const to = r * dw;
    for (let x = 0; x < dw; x++) {
      const wx = wxs[x]!;
      rows[to + x] = src[from + x0s[x]!]! * (1 - wx) + src[from + x1s[x]!]! * wx;
    }
  }
  for (let y = 0; y < dh; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), sh - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, sh - 1);
    const wy = fy - y0;
    const top = y0 * dw;
    const bottom = y1 * dw;
    const at = y * dw;
    for (let x = 0; x < dw; x++) out[at + x] = rows[top + x]! * (1 - wy) + rows[bottom + x]! * wy;
  }
  return out;
}

/** Side of the working grid the hot region is found on. */
const HOT_REGION_GRID_PX = 224;

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
  const gw = Math.min(imageWidth, HOT_REGION_GRID_PX);
  const gh = Math.min(imageHeight, HOT_REGION_GRID_PX);
  return hotRegionOnGrid(resizeBilinear(map01, mapWidth, mapHeight, gw, gh), gw, gh, imageWidth, imageHeight, threshold);
}

function hotRegionOnGrid(
  grid: Float32Array,
  gw: number,
  gh: number,
  imageWidth: number,
  imageHeight: number,
  threshold = 0.5,
): HotRegion | null {
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
  // Each cell is pushed at most once (marked as it is pushed), so the stack never outgrows the grid.
  const stack = new Int32Array(grid.length);
  let top = 0;
  stack[top++] = peak;
  seen[peak] = 1;
  let minX = gw;
  let minY = gh;
  let maxX = -1;
  let maxY = -1;
  while (top > 0) {
    const i = stack[--top]!;
    const y = (i / gw) | 0;
    const x = i - y * gw;
    if (x < minX) minX = x;
    if (x > maxX) maxX = x;
    if (y < minY) minY = y;
    if (y > maxY) maxY = y;
    const left = x > 0 ? x - 1 : x;
    const right = x + 1 < gw ? x + 1 : x;
    const bottom = y + 1 < gh ? y + 1 : y;
    for (let ny = y > 0 ? y - 1 : y; ny <= bottom; ny++) {
      for (let j = ny * gw + left, end = ny * gw + right; j <= end; j++) {
        if (!seen[j] && grid[j]! >= cut) {
          seen[j] = 1;
          stack[top++] = j;
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

/** Jet colormap (blue -> cyan -> yellow -> red) at `t` in [0, 1], one channel (0 R, 1 G, 2 B). */
function jet(t: number, channel: number): number {
  return Math.round(255 * Math.min(1, Math.max(0, 1.5 - Math.abs(4 * t - 3 + channel))));
}

/**
 * The overlay's colour for every (activation level, gray) pair: 256 levels x 256 grays x RGB,
 * 192 KiB built once per thread, so a pixel is one table read instead of a blend in floats.
 * The opacity grows with the activation (0.2 to 0.6), so cold areas keep the anatomy readable
 * under a light tint.
 */
let blendTable: Uint8Array | null = null;

function overlayTable(): Uint8Array {
  if (blendTable) return blendTable;
  const table = new Uint8Array(256 * 256 * 3);
  for (let level = 0; level < 256; level++) {
    const t = level / 255;
    const alpha = 0.2 + 0.4 * t;
    const colour = [0, 1, 2].map((c) => jet(t, c) * alpha);
    for (let g = 0; g < 256; g++) {
      const base = g * (1 - alpha);
      const at = (level * 256 + g) * 3;
      table[at] = Math.round(base + colour[0]!);
      table[at + 1] = Math.round(base + colour[1]!);
      table[at + 2] = Math.round(base + colour[2]!);
    }
  }
  blendTable = table;
  return table;
}

/**
 * Colour the map with jet and blend it over the grayscale image, at the image's size (so the
 * web viewer lays it over the image pixel for pixel). PNG at compression level 1: the heatmap
 * is stored once and shown a few times, and level 6 cost about four times the rest of the
 * rendering for a file about a third smaller. Encoded on this thread (src/imaging/png.ts), not
 * through sharp, whose pipeline cost more than the zlib work for an image this small.
 */
function renderOverlay(heat: Float32Array, image: { gray: Uint8Array; width: number; height: number }): Buffer {
  const { width, height, gray } = image;
  const table = overlayTable();
  const out = new Uint8Array(width * height * 3);
  for (let i = 0, o = 0; i < width * height; i++, o += 3) {
    const t = heat[i]!;
    // Math.round(t * 255) for 0 < t < 1 without the call (this loop took ~2.3x as long with it):
    // t is a float32, so t * 255 + 0.5 is exact in a double and its integer part is the level.
    const level = t >= 1 ? 255 : t > 0 ? (t * 255 + 0.5) | 0 : 0;
    const at = level * 768 + gray[i]! * 3;
    out[o] = table[at]!;
    out[o + 1] = table[at + 1]!;
    out[o + 2] = table[at + 2]!;
  }
  return encodePlainPng({ data: out, width, height, channels: 3 });
}

/** Hot region, the map, and unless `render` is false the heatmap PNG, for one class of a [K, h, w] map tensor. */
export async function explainClass(
  cam: Float32Array,
  classIndex: number,
  mapWidth: number,
  mapHeight: number,
  image: { gray: Uint8Array; width: number; height: number },
  options: { render?: boolean } = {},
): Promise<Explanation> {
  const map01 = normaliseMap(classMap(cam, classIndex, mapWidth, mapHeight));
  const map: HeatmapMap = { width: mapWidth, height: mapHeight, values: Array.from(map01) };
  const { width, height } = image;
  // For an image within the working grid (the datasets' are 224 px) the grid is the image's own
  // size, so the region is the one the overlay's map gives: the same box either way.
  if (options.render === false) return { heatmap: null, map, hotRegion: findHotRegion(map01, mapWidth, mapHeight, width, height) };
  const heat = resizeBilinear(map01, mapWidth, mapHeight, width, height);
  // An image within the working grid has its hot region found on the overlay's own map instead
  // of resizing the map a second time to the same size.
  const hotRegion =
    width <= HOT_REGION_GRID_PX && height <= HOT_REGION_GRID_PX
      ? hotRegionOnGrid(heat, width, height, width, height)
      : findHotRegion(map01, mapWidth, mapHeight, width, height);
  const png = renderOverlay(heat, image);
  return { heatmap: { png, width: image.width, height: image.height }, map, hotRegion };
}

/** Whether a kept map has a value for each of its cells, each a number. */
export function isWholeMap(map: HeatmapMap): boolean {
  const { width, height, values } = map;
  return Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0 && Array.isArray(values) && values.length === width * height && values.every((v) => typeof v === 'number');
}

/**
 * The heatmap PNG of a kept map over the grayscale image it was explained on: the bytes
 * explainClass renders for the same map and image (the same resize, table and encoder).
 */
export function renderHeatmap(map: HeatmapMap, image: { gray: Uint8Array; width: number; height: number }): Buffer {
  if (!isWholeMap(map)) throw new Error('the heatmap map does not match its size');
  const { width, height, values } = map;
  const heat = resizeBilinear(Float32Array.from(values), width, height, image.width, image.height);
  return renderOverlay(heat, image);
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
