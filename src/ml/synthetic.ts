/**
 * Deterministic synthetic images that are *not* scans: stand-ins for the photographs,
 * documents, blank frames and noise a user might upload by mistake. Used to build the
 * evaluation reject set (scripts/make-reject-set.ts) and by the refusal tests.
 */
import sharp from 'sharp';

/** mulberry32: small, fast, deterministic PRNG in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = (
  'patient report summary the of and results clinic date page signature hospital invoice total ' +
  'please review attached findings history medication dose daily weekly follow appointment ' +
  'address phone insurance number reference laboratory sample normal range value units'
).split(' ');

const pick = <T>(r: () => number, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: () => number, lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
const colour = (r: () => number) => `rgb(${int(r, 0, 255)},${int(r, 0, 255)},${int(r, 0, 255)})`;

function words(r: () => number, n: number): string {
  return Array.from({ length: n }, () => pick(r, WORDS)).join(' ');
}

/**
 * A colour "photograph": a sky/ground gradient, random shapes and a caption. With `gray` the
 * same picture in grayscale, which the colour check cannot catch.
 */
export async function syntheticPhoto(seed: number, options: { gray?: boolean } = {}): Promise<Buffer> {
  const r = rng(seed);
  const width = pick(r, [640, 800, 480, 512]);
  const height = pick(r, [480, 600, 640, 512]);
  const shapes: string[] = [];
  const count = int(r, 4, 12);
  for (let i = 0; i < count; i++) {
    const kind = int(r, 0, 2);
    const x = int(r, 0, width);
    const y = int(r, 0, height);
    if (kind === 0) shapes.push(`<circle cx="${x}" cy="${y}" r="${int(r, 10, 120)}" fill="${colour(r)}"/>`);
    else if (kind === 1) {
      shapes.push(`<rect x="${x}" y="${y}" width="${int(r, 20, 250)}" height="${int(r, 20, 200)}" fill="${colour(r)}"/>`);
    } else {
      shapes.push(
        `<ellipse cx="${x}" cy="${y}" rx="${int(r, 20, 160)}" ry="${int(r, 10, 80)}" fill="${colour(r)}" opacity="0.8"/>`,
      );
    }
  }
  const horizon = int(r, Math.floor(height * 0.3), Math.floor(height * 0.7));
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
  <defs>
    <linearGradient id="sky" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="${colour(r)}"/><stop offset="1" stop-color="${colour(r)}"/></linearGradient>
    <linearGradient id="ground" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="${colour(r)}"/><stop offset="1" stop-color="${colour(r)}"/></linearGradient>
  </defs>
  <rect width="${width}" height="${horizon}" fill="url(#sky)"/>
  <rect y="${horizon}" width="${width}" height="${height - horizon}" fill="url(#ground)"/>
  ${shapes.join('\n  ')}
  <text x="${int(r, 10, 60)}" y="${height - int(r, 20, 60)}" font-family="DejaVu Sans" font-size="${int(r, 18, 40)}" fill="${colour(r)}">${words(r, 3)}</text>
</svg>`;
  let img = sharp(Buffer.from(svg)).blur(0.6);
  if (options.gray) img = img.grayscale();
  return img.png().toBuffer();
}

/** A document: a white page with black text lines, a heading and a rule. */
export async function syntheticDocument(seed: number): Promise<Buffer> {
  const r = rng(seed);
  const width = pick(r, [850, 620, 1000]);
  const height = Math.round(width * 1.294);
  const size = int(r, 12, 20);
  const lines: string[] = [];
  let y = 60 + size * 2;
  lines.push(`<text x="50" y="60" font-family="DejaVu Serif" font-weight="bold" font-size="${size * 2}">${words(r, 3)}</text>`);
  lines.push(`<line x1="50" y1="${y - size}" x2="${width - 50}" y2="${y - size}" stroke="black" stroke-width="2"/>`);
  while (y < height - 60) {
    const perLine = Math.floor((width - 100) / (size * 3.4));
    lines.push(`<text x="50" y="${y}" font-family="DejaVu Sans" font-size="${size}">${words(r, int(r, Math.max(1, perLine - 3), perLine))}</text>`);
    y += Math.round(size * (r() < 0.15 ? 2.6 : 1.5));
  }
  const paper = pick(r, ['white', 'rgb(250,250,248)', 'rgb(242,242,242)']);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
  <rect width="${width}" height="${height}" fill="${paper}"/>
  ${lines.join('\n  ')}
</svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

/** A constant image (or nearly constant, with faint noise) in a random gray or colour. */
export async function blankImage(seed: number): Promise<Buffer> {
  const r = rng(seed);
  const width = pick(r, [224, 512, 640]);
  const height = pick(r, [224, 512, 480]);
  const base = pick(r, [
    [0, 0, 0],
    [255, 255, 255],
    [128, 128, 128],
    [int(r, 0, 255), int(r, 0, 255), int(r, 0, 255)],
  ]);
  const jitter = r() < 0.5 ? 0 : 2;
  const data = Buffer.alloc(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    const d = jitter ? Math.round((r() * 2 - 1) * jitter) : 0;
    for (let c = 0; c < 3; c++) data[i * 3 + c] = Math.min(255, Math.max(0, base[c]! + d));
  }
  return sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
}

/** Noise: uniform, Gaussian or salt-and-pepper, gray or colour. */
export async function noiseImage(seed: number): Promise<Buffer> {
  const r = rng(seed);
  const width = pick(r, [224, 256, 512]);
  const height = pick(r, [224, 256, 512]);
  const kind = int(r, 0, 3);
  const data = Buffer.alloc(width * height * 3);
  const gauss = () => {
    const u = Math.max(r(), 1e-12);
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  };
  for (let i = 0; i < width * height; i++) {
    let v: [number, number, number];
    if (kind === 0) {
      const g = int(r, 0, 255);
      v = [g, g, g];
    } else if (kind === 1) {
      const g = 128 + gauss() * 50;
      v = [g, g, g];
    } else if (kind === 2) {
      const g = r() < 0.5 ? 0 : 255;
      v = [g, g, g];
    } else {
      v = [int(r, 0, 255), int(r, 0, 255), int(r, 0, 255)];
    }
    for (let c = 0; c < 3; c++) data[i * 3 + c] = Math.min(255, Math.max(0, Math.round(v[c]!)));
  }
  return sharp(data, { raw: { width, height, channels: 3 } }).png().toBuffer();
}
