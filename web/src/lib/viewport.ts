/**
 * Where the image is on the canvas (scale and offset), and the mapping between canvas
 * coordinates and the image's own pixels. Annotations are stored in image pixels whatever
 * the zoom or pan, so every placement goes through `toImage`. Pure, so it is tested under node.
 */

export interface View {
  /** Canvas pixels per image pixel. */
  scale: number;
  /** The canvas position of the image's top-left corner. */
  x: number;
  y: number;
}

export interface Size {
  width: number;
  height: number;
}

export interface Point {
  x: number;
  y: number;
}

const MIN_SCALE = 0.05;
const MAX_SCALE = 40;

/** The whole image centred in the box, with a small margin. */
export function fitView(box: Size, image: Size): View {
  const scale = Math.min(box.width / image.width, box.height / image.height) * 0.96;
  return { scale, x: (box.width - image.width * scale) / 2, y: (box.height - image.height * scale) / 2 };
}

/** Zooms by `factor` about canvas point (cx, cy): the image point under it stays there. */
export function zoomAt(view: View, factor: number, cx: number, cy: number): View {
  const scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, view.scale * factor));
  const k = scale / view.scale;
  return { scale, x: cx - (cx - view.x) * k, y: cy - (cy - view.y) * k };
}

export function panBy(view: View, dx: number, dy: number): View {
  return { ...view, x: view.x + dx, y: view.y + dy };
}

/** The image point under canvas point p (unrounded). */
export function toImage(view: View, p: Point): Point {
  return { x: (p.x - view.x) / view.scale, y: (p.y - view.y) / view.scale };
}

/** The canvas point of image point p. */
export function toCanvas(view: View, p: Point): Point {
  return { x: view.x + p.x * view.scale, y: view.y + p.y * view.scale };
}

/**
 * The annotation point for canvas point p: whole image pixels, or null when p is off the
 * image (a click beside the picture places nothing).
 */
export function placementAt(view: View, p: Point, image: Size): Point | null {
  const q = toImage(view, p);
  if (q.x < 0 || q.y < 0 || q.x >= image.width || q.y >= image.height) return null;
  return { x: Math.min(image.width - 1, Math.round(q.x)), y: Math.min(image.height - 1, Math.round(q.y)) };
}

/** Keyboard placement: the image point at the centre of the canvas (pan it there with the arrows). */
export function placementAtCentre(view: View, box: Size, image: Size): Point | null {
  return placementAt(view, { x: box.width / 2, y: box.height / 2 }, image);
}

/** The pan of one arrow key press, in canvas pixels: the image moves the other way. */
export function arrowPan(key: string, step = 40): [number, number] | null {
  switch (key) {
    case 'ArrowLeft':
      return [step, 0];
    case 'ArrowRight':
      return [-step, 0];
    case 'ArrowUp':
      return [0, step];
    case 'ArrowDown':
      return [0, -step];
    default:
      return null;
  }
}
