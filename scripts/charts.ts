/**
 * The model cards' pictures, drawn here as SVG and rasterised to PNG by sharp (librsvg): ROC
 * curves and reliability diagrams from an evaluation's `curves`. No plotting dependency.
 */
import sharp from 'sharp';

import type { ReliabilityBin } from '../src/ml/metrics.js';

const W = 520;
const H = 440;
const M = { left: 62, right: 18, top: 40, bottom: 52 };
const PW = W - M.left - M.right;
const PH = H - M.top - M.bottom;
export const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e'];

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const x = (v: number) => M.left + v * PW;
const y = (v: number) => M.top + (1 - v) * PH;

function frame(title: string, xLabel: string, yLabel: string): string[] {
  const parts = [
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="24" font-family="DejaVu Sans, sans-serif" font-size="15" text-anchor="middle">${esc(title)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const v = i / 5;
    parts.push(`<line x1="${x(v)}" y1="${y(0)}" x2="${x(v)}" y2="${y(1)}" stroke="#e5e5e5"/>`);
    parts.push(`<line x1="${x(0)}" y1="${y(v)}" x2="${x(1)}" y2="${y(v)}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${x(v)}" y="${y(0) + 18}" font-family="DejaVu Sans, sans-serif" font-size="11" text-anchor="middle">${v.toFixed(1)}</text>`);
    parts.push(`<text x="${x(0) - 8}" y="${y(v) + 4}" font-family="DejaVu Sans, sans-serif" font-size="11" text-anchor="end">${v.toFixed(1)}</text>`);
  }
  parts.push(`<rect x="${x(0)}" y="${y(1)}" width="${PW}" height="${PH}" fill="none" stroke="#333"/>`);
  parts.push(`<text x="${M.left + PW / 2}" y="${H - 12}" font-family="DejaVu Sans, sans-serif" font-size="12" text-anchor="middle">${esc(xLabel)}</text>`);
  parts.push(
    `<text x="16" y="${M.top + PH / 2}" font-family="DejaVu Sans, sans-serif" font-size="12" text-anchor="middle" transform="rotate(-90 16 ${M.top + PH / 2})">${esc(yLabel)}</text>`,
  );
  return parts;
}

function legend(entries: { label: string; colour: string; dash?: string }[], bottomRight = true): string[] {
  const lineH = 17;
  const top = bottomRight ? y(0) - 10 - entries.length * lineH : y(1) + 10;
  const left = bottomRight ? x(1) - 250 : x(0) + 10;
  const out = [`<rect x="${left - 6}" y="${top - 4}" width="250" height="${entries.length * lineH + 8}" fill="white" fill-opacity="0.85" stroke="#ccc"/>`];
  entries.forEach((e, i) => {
    const ly = top + i * lineH + 9;
    out.push(`<line x1="${left}" y1="${ly}" x2="${left + 24}" y2="${ly}" stroke="${e.colour}" stroke-width="2.5"${e.dash ? ` stroke-dasharray="${e.dash}"` : ''}/>`);
    out.push(`<text x="${left + 30}" y="${ly + 4}" font-family="DejaVu Sans, sans-serif" font-size="11">${esc(e.label)}</text>`);
  });
  return out;
}

export interface RocSeries {
  label: string;
  points: [number, number][];
  colour: string;
  dash?: string;
  /** Operating points to mark: [fpr, tpr] with a name. */
  marks?: { name: string; fpr: number; tpr: number }[];
}

export function rocSvg(title: string, series: RocSeries[]): string {
  const parts = frame(title, 'false-positive rate (1 - specificity)', 'true-positive rate (sensitivity)');
  parts.push(`<line x1="${x(0)}" y1="${y(0)}" x2="${x(1)}" y2="${y(1)}" stroke="#999" stroke-dasharray="4 4"/>`);
  for (const s of series) {
    const pts = s.points.map(([fx, fy]) => `${x(fx).toFixed(1)},${y(fy).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${pts}" fill="none" stroke="${s.colour}" stroke-width="2.2"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`);
    for (const m of s.marks ?? []) {
      parts.push(`<circle cx="${x(m.fpr)}" cy="${y(m.tpr)}" r="4.5" fill="white" stroke="${s.colour}" stroke-width="2"/>`);
      parts.push(`<text x="${x(m.fpr) + 7}" y="${y(m.tpr) + 14}" font-family="DejaVu Sans, sans-serif" font-size="10" fill="${s.colour}">${esc(m.name)}</text>`);
    }
  }
  parts.push(...legend(series.map((s) => ({ label: s.label, colour: s.colour, dash: s.dash }))));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">${parts.join('')}</svg>`;
}

export function reliabilitySvg(title: string, series: { label: string; bins: ReliabilityBin[]; colour: string }[]): string {
  const parts = frame(title, 'confidence (top-class probability)', 'accuracy');
  parts.push(`<line x1="${x(0)}" y1="${y(0)}" x2="${x(1)}" y2="${y(1)}" stroke="#999" stroke-dasharray="4 4"/>`);
  const width = series.length ? 1 / (series[0]!.bins.length * (series.length + 0.5)) : 0;
  series.forEach((s, k) => {
    const total = s.bins.reduce((a, b) => a + b.n, 0);
    for (const b of s.bins) {
      if (!b.n || b.accuracy === null) continue;
      const left = b.lo + width * (k + 0.25);
      // Bar height is the bin's accuracy; opacity grows with the share of images in it.
      const opacity = Math.min(1, 0.25 + (3 * b.n) / Math.max(1, total));
      parts.push(
        `<rect x="${x(left).toFixed(1)}" y="${y(b.accuracy).toFixed(1)}" width="${(width * PW).toFixed(1)}" height="${(b.accuracy * PH).toFixed(1)}" fill="${s.colour}" fill-opacity="${opacity.toFixed(2)}"/>`,
      );
    }
    const pts = s.bins
      .filter((b) => b.n && b.confidence !== null && b.accuracy !== null)
      .map((b) => `${x(b.confidence!).toFixed(1)},${y(b.accuracy!).toFixed(1)}`)
      .join(' ');
    parts.push(`<polyline points="${pts}" fill="none" stroke="${s.colour}" stroke-width="1.8"/>`);
  });
  parts.push(...legend(series.map((s) => ({ label: s.label, colour: s.colour })), false));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">${parts.join('')}</svg>`;
}

export function svgToPng(svg: string): Promise<Buffer> {
  return sharp(Buffer.from(svg)).png({ compressionLevel: 9 }).toBuffer();
}
