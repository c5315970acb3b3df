/**
 * Renders the printable scan report: patient and scan details, the finding shown to the reader
 * (the physician's when reviewed), the scan with numbered annotations, the model's attention
 * map, and a notice that nothing here is a diagnosis until a physician has reviewed it.
 *
 * Text is drawn in Unicode fonts (./fonts.ts), so names and notes in most scripts print as
 * written; what no font has is marked and every page says how many characters it left out. Only when those fonts are missing does text fall back to Helvetica, which covers
 * WinAnsi alone: then `pdfText` replaces what it cannot show, because pdfkit would otherwise
 * write garbage bytes instead of failing.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import PDFDocument from 'pdfkit';
import sharp from 'sharp';
import { scanTypeSpec, type ScanType } from '../scan-types/index.js';
import { MISSING_GLYPH, REPORT_FONT, withFallbackFonts } from './fonts.js';

export interface ReportInput {
  scan: {
    id: string;
    scanType: ScanType | null;
    scanDate: Date | null;
    uploadedAt: Date;
    status: string;
    modality?: string | null;
    studyInstanceUid?: string | null;
    originalFormat: 'jpeg' | 'png' | 'dicom';
  };
  patient: { patientId: string; name: string; dateOfBirth: Date | null; gender: string | null };
  /** Display PNG of the scan; annotation and hot-region coordinates are in its pixels. */
  image: Buffer;
  /** PNG overlay of model attention, same size as `image`, when the scan was analysed. */
  heatmap?: Buffer | null;
  hotRegion?: { x: number; y: number; width: number; height: number } | null;
  annotations: Array<{ x: number; y: number; text: string; createdAt: Date; createdBy?: { name: string } | null }>;
  /** The result shown to the reader: the reviewed one when a physician has reviewed the scan. */
  finding: null | {
    summary: string;
    confidence: number | null;
    probabilities?: Record<string, number>;
    /** Where the model looked, for scan types that localise a finding ("Tumour location"). */
    location?: { label: string; value: string | null };
    additionalNotes?: string | null;
  };
  model: null | { id: string; version: string; name?: string };
  /** The model's original output, given when a physician changed it. */
  modelFinding?: null | { summary: string; confidence: number | null };
  review: null | { reviewer: { name: string; email?: string }; reviewedAt: Date; status: string };
  /** An analysis that finished after the review: shown beside the reviewed finding, never instead. */
  newerAnalysis?: null | {
    summary: string | null;
    confidence: number | null;
    completedAt: Date | null;
    model: { id: string; version: string } | null;
    refusalReason?: string | null;
  };
  refusalReason?: string | null;
  generatedAt: Date;
  generatedBy: { name: string };
}

type Doc = PDFKit.PDFDocument;

let templateDigest: string | undefined;

/**
 * Digest of the code that lays a report out (this module and ./fonts), read from the files
 * running: a report stored by another version of it is not the one this version would print.
 */
export function reportTemplateDigest(): string {
  if (templateDigest === undefined) {
    const self = fileURLToPath(import.meta.url);
    const hash = createHash('sha256');
    for (const file of [self, path.join(path.dirname(self), `fonts${path.extname(self)}`)]) hash.update(readFileSync(file));
    templateDigest = hash.digest('hex');
  }
  return templateDigest;
}

const FONT = REPORT_FONT.regular;
const FONT_BOLD = REPORT_FONT.bold;
const FONT_ITALIC = REPORT_FONT.italic;

const MARGIN = { top: 48, left: 48, right: 48, bottom: 60 };
const MISSING = '—';
/** Images are downscaled to this many pixels on their long side: ~300 dpi at the drawn size. */
const MAX_IMAGE_PX = 1000;

const COLOR = {
  text: '#1b1f24',
  muted: '#5d6978',
  rule: '#cdd5de',
  accent: '#1f3a5f',
  zebra: '#f3f5f8',
  danger: '#b00020',
  dangerBg: '#fdecea',
  warn: '#8a5300',
  warnBg: '#fff3dc',
  panel: '#000000',
  barBg: '#e3e8ee',
  bar: '#2f5d8f',
  marker: '#ffd400',
  hotRegion: '#00e5ff',
} as const;

/** Where warnings about the fonts go (the caller's pino logger): never the report's text. */
export interface RenderOptions {
  warn?: (message: string) => void;
  /** Tests only: render as on a machine without the font packages. */
  withoutUnicodeFonts?: boolean;
}

/** True while the document being drawn has only Helvetica: text is then reduced to WinAnsi. */
let winAnsiOnly = false;

export async function renderReportPdf(input: ReportInput, { warn = () => undefined, withoutUnicodeFonts = false }: RenderOptions = {}): Promise<Buffer> {
  const [image, heatmap] = await Promise.all([
    prepareImage(input.image),
    input.heatmap ? prepareImage(input.heatmap) : Promise.resolve(null),
  ]);

  const doc = new PDFDocument({
    size: 'A4',
    margins: MARGIN,
    bufferPages: true,
    info: {
      // No patient data in the metadata: file browsers and indexers show it without opening the file.
      Title: `ImageMedix scan report ${pdfText(input.scan.id)}`,
      Subject: 'Scan report',
      Author: 'ImageMedix',
      Creator: 'ImageMedix',
      CreationDate: input.generatedAt,
    },
  });
  const pdf = collect(doc);
  // Drawing below is synchronous, so this flag cannot leak into another report.
  const fonts = withFallbackFonts(doc, warn, withoutUnicodeFonts ? false : undefined);
  winAnsiOnly = !fonts.unicode;
  doc.font(FONT);

  drawHeader(doc, input);
  drawNotice(doc);
  drawDetails(doc, input);
  drawFindings(doc, input);
  drawReview(doc, input);
  drawImages(doc, input, image, heatmap);
  drawAnnotations(doc, input);
  // Known only once everything is drawn, so it is told on every page's footer.
  const missing = fonts.missingCharacters();
  if (missing > 0) warn(`PDF report: ${missing} ${missing === 1 ? 'character has' : 'characters have'} no glyph in the report fonts and printed as U+FFFD`);
  drawFooters(doc, input, missing);

  doc.end();
  return pdf;
}

// ---------------------------------------------------------------------------------------------
// Sections

function drawHeader(doc: Doc, input: ReportInput): void {
  const { left, width } = content(doc);
  doc.font(FONT_BOLD).fontSize(20).fillColor(COLOR.accent).text('ImageMedix — Scan report', left, doc.page.margins.top, { width });
  doc
    .moveDown(0.2)
    .font(FONT)
    .fontSize(9)
    .fillColor(COLOR.muted)
    .text(`Generated ${formatDateTime(input.generatedAt)} by ${pdfText(input.generatedBy.name)}`, left, doc.y, { width });
  rule(doc, doc.y + 6);
  doc.y += 14;
}

function drawNotice(doc: Doc): void {
  const { left, width } = content(doc);
  const title = 'NOT FOR DIAGNOSTIC USE WITHOUT PHYSICIAN REVIEW';
  const detail = 'Research software, not a medical device. Model output must be confirmed by a qualified physician.';
  const pad = 9;
  const titleHeight = doc.font(FONT_BOLD).fontSize(13).heightOfString(title, { width: width - 2 * pad });
  const detailHeight = doc.font(FONT).fontSize(9).heightOfString(detail, { width: width - 2 * pad });
  const height = pad + titleHeight + 3 + detailHeight + pad;
  const top = doc.y;

  doc.save().lineWidth(2).rect(left, top, width, height).fillAndStroke(COLOR.dangerBg, COLOR.danger).restore();
  doc.font(FONT_BOLD).fontSize(13).fillColor(COLOR.danger).text(title, left + pad, top + pad, { width: width - 2 * pad, align: 'center' });
  doc
    .font(FONT)
    .fontSize(9)
    .fillColor(COLOR.danger)
    .text(detail, left + pad, top + pad + titleHeight + 3, { width: width - 2 * pad, align: 'center' });
  doc.y = top + height + 16;
}

function drawDetails(doc: Doc, input: ReportInput): void {
  const { left, width } = content(doc);
  const gap = 24;
  // The scan column holds UUIDs and DICOM UIDs, so it gets the room.
  const patientWidth = Math.round((width - gap) * 0.44);
  const scanWidth = width - gap - patientWidth;
  const scanX = left + patientWidth + gap;
  const { patient, scan } = input;
  const top = doc.y;

  subheading(doc, 'Patient', left, top, patientWidth);
  const patientBottom = keyValues(doc, left, doc.y, patientWidth, [
    ['Patient ID', patient.patientId],
    ['Name', patient.name],
    ['Date of birth', formatDate(patient.dateOfBirth)],
    ['Gender', humanize(patient.gender)],
  ]);

  subheading(doc, 'Scan', scanX, top, scanWidth);
  const scanBottom = keyValues(doc, scanX, doc.y, scanWidth, [
    ['Scan ID', scan.id],
    ['Scan type', scanTypeLabel(scan.scanType)],
    ['Scan date', formatDate(scan.scanDate)],
    ['Uploaded', formatDateTime(scan.uploadedAt)],
    ['Status', humanize(scan.status)],
    ['Format', scan.originalFormat.toUpperCase()],
    ['Modality', scan.modality],
    ['Study UID', scan.studyInstanceUid],
  ]);

  doc.y = Math.max(patientBottom, scanBottom) + 10;
}

function drawFindings(doc: Doc, input: ReportInput): void {
  const { left, width } = content(doc);
  const { finding, refusalReason, model, modelFinding } = input;
  sectionHeading(doc, 'Findings', 90);

  if (refusalReason) {
    callout(doc, 'The model declined to give a result', refusalReason, COLOR.warn, COLOR.warnBg);
  }

  if (finding) {
    label(doc, input.review ? 'Finding after physician review' : 'Model finding, not yet reviewed by a physician', left, doc.y);
    doc.font(FONT_BOLD).fontSize(14).fillColor(COLOR.text).text(pdfText(finding.summary), left, doc.y, { width });
    doc.y += 6;
    const rows: Array<[string, string | null | undefined]> = [['Confidence', formatPercent(finding.confidence)]];
    if (finding.location) rows.push([finding.location.label, finding.location.value]);
    doc.y = keyValues(doc, left, doc.y, width, rows);
    if (finding.additionalNotes) {
      doc.y += 2;
      label(doc, 'Notes', left, doc.y);
      doc.font(FONT).fontSize(9.5).fillColor(COLOR.text).text(pdfText(finding.additionalNotes), left, doc.y + 2, { width });
      doc.y += 6;
    }
    if (finding.probabilities && Object.keys(finding.probabilities).length > 0) {
      drawProbabilities(doc, finding.probabilities);
    }
  } else if (!refusalReason) {
    doc
      .font(FONT_BOLD)
      .fontSize(11)
      .fillColor(COLOR.text)
      .text('No analysis result: this scan has not been analysed by a model.', left, doc.y, { width });
    doc
      .font(FONT)
      .fontSize(9)
      .fillColor(COLOR.muted)
      .text(`Scan status: ${humanize(input.scan.status)}`, left, doc.y + 2, { width });
    doc.y += 6;
  }

  if (modelFinding && finding && differs(modelFinding, finding)) {
    drawComparison(doc, modelFinding, finding);
  }

  const newer = input.newerAnalysis;
  if (newer) {
    const said = newer.summary
      ? `${newer.summary} (confidence ${formatPercent(newer.confidence)})`
      : `no result: ${newer.refusalReason ?? 'the analysis failed'}`;
    const by = newer.model ? `, model ${newer.model.id} ${newer.model.version}` : '';
    callout(
      doc,
      'A newer analysis finished after this review',
      `${formatDateTime(newer.completedAt)}${by}: ${said}. The physician's review above stands until a physician reviews the scan again.`,
      COLOR.warn,
      COLOR.warnBg,
    );
  }

  doc.y += 4;
  const modelRows: Array<[string, string | null | undefined]> = [
    ['Model', model ? (model.name ?? model.id) : null],
    ['Model version', model?.version],
  ];
  if (model?.name) modelRows.push(['Model ID', model.id]);
  doc.y = keyValues(doc, left, doc.y, width, modelRows) + 6;
}

function drawProbabilities(doc: Doc, probabilities: Record<string, number>): void {
  const { left } = content(doc);
  const entries = Object.entries(probabilities).sort(([, a], [, b]) => b - a);
  const nameWidth = 120;
  const barWidth = 200;
  const rowHeight = 14;
  ensureSpace(doc, 16 + rowHeight * Math.min(entries.length, 3));
  label(doc, 'Class probabilities', left, doc.y + 2);
  doc.y += 3;
  for (const [name, probability] of entries) {
    ensureSpace(doc, rowHeight);
    const y = doc.y;
    doc.font(FONT).fontSize(9).fillColor(COLOR.text).text(humanize(name), left, y, { width: nameWidth - 6, height: 11, ellipsis: true });
    const share = Number.isFinite(probability) ? Math.min(Math.max(probability, 0), 1) : 0;
    doc.save().rect(left + nameWidth, y + 1.5, barWidth, 7).fill(COLOR.barBg).restore();
    if (share > 0) doc.save().rect(left + nameWidth, y + 1.5, barWidth * share, 7).fill(COLOR.bar).restore();
    doc
      .font(FONT)
      .fontSize(9)
      .fillColor(COLOR.text)
      .text(formatPercent(probability), left + nameWidth + barWidth + 8, y, { width: 60, lineBreak: false });
    doc.y = y + rowHeight;
  }
  doc.y += 4;
}

/** The physician changed the model's result: show both so the reader sees what was overridden. */
function drawComparison(
  doc: Doc,
  modelFinding: NonNullable<ReportInput['modelFinding']>,
  finding: NonNullable<ReportInput['finding']>,
): void {
  const { left, width } = content(doc);
  const gap = 16;
  const boxWidth = (width - gap) / 2;
  const pad = 8;
  const boxes = [
    { title: 'Model output (original)', summary: modelFinding.summary, confidence: modelFinding.confidence },
    { title: 'Physician-reviewed finding (reported above)', summary: finding.summary, confidence: finding.confidence },
  ];
  const textWidth = boxWidth - 2 * pad;
  const heights = boxes.map(
    (box) =>
      doc.font(FONT_BOLD).fontSize(8.5).heightOfString(box.title, { width: textWidth }) +
      4 +
      doc.font(FONT_BOLD).fontSize(10).heightOfString(pdfText(box.summary), { width: textWidth }) +
      2 +
      doc.font(FONT).fontSize(9).heightOfString('Confidence', { width: textWidth }),
  );
  const height = Math.max(...heights) + 2 * pad;
  ensureSpace(doc, height + 24);

  doc.y += 4;
  doc.font(FONT_BOLD).fontSize(9.5).fillColor(COLOR.warn).text("The physician's review changed the model's result", left, doc.y, { width });
  const top = doc.y + 4;
  boxes.forEach((box, i) => {
    const x = left + i * (boxWidth + gap);
    doc.save().lineWidth(0.75).rect(x, top, boxWidth, height).stroke(COLOR.rule).restore();
    doc.font(FONT_BOLD).fontSize(8.5).fillColor(COLOR.muted).text(box.title, x + pad, top + pad, { width: textWidth });
    doc.font(FONT_BOLD).fontSize(10).fillColor(COLOR.text).text(pdfText(box.summary), x + pad, doc.y + 4, { width: textWidth });
    doc
      .font(FONT)
      .fontSize(9)
      .fillColor(COLOR.text)
      .text(`Confidence ${formatPercent(box.confidence)}`, x + pad, doc.y + 2, { width: textWidth });
  });
  doc.y = top + height + 8;
}

function drawReview(doc: Doc, input: ReportInput): void {
  const { left, width } = content(doc);
  sectionHeading(doc, 'Physician review', 50);
  const { review } = input;
  if (!review) {
    doc.font(FONT_BOLD).fontSize(11).fillColor(COLOR.danger).text('Not yet reviewed by a physician', left, doc.y, { width });
    doc
      .font(FONT)
      .fontSize(9)
      .fillColor(COLOR.muted)
      .text('Any finding above is the unconfirmed output of a machine-learning model.', left, doc.y + 2, { width });
    doc.y += 10;
    return;
  }
  const reviewer = review.reviewer.email
    ? `${review.reviewer.name} <${review.reviewer.email}>`
    : review.reviewer.name;
  doc.y = keyValues(doc, left, doc.y, width, [
    ['Status', humanize(review.status)],
    ['Reviewed by', reviewer],
    ['Reviewed at', formatDateTime(review.reviewedAt)],
  ]);
  doc.y += 10;
}

function drawImages(doc: Doc, input: ReportInput, image: PreparedImage | null, heatmap: PreparedImage | null): void {
  const { left, width } = content(doc);
  const gap = 20;
  const panelSize = (width - gap) / 2;
  const captionHeight = 30;
  sectionHeading(doc, 'Images', panelSize + captionHeight);

  const top = doc.y;
  const scanX = heatmap ? left : left + (width - panelSize) / 2;
  const scanRect = drawImagePanel(doc, image, scanX, top, panelSize);
  if (scanRect && image) drawMarkers(doc, input.annotations, image, scanRect);
  caption(
    doc,
    input.annotations.length > 0 ? 'Scan image. Numbered markers refer to the annotations below.' : 'Scan image.',
    scanX,
    top + panelSize + 5,
    panelSize,
  );

  if (heatmap) {
    const heatX = left + panelSize + gap;
    const heatRect = drawImagePanel(doc, image, heatX, top, panelSize);
    if (heatRect) {
      // The heatmap may be a translucent overlay or already blended; drawn over the scan it reads right either way.
      doc.image(heatmap.png, heatRect.x, heatRect.y, { width: heatRect.width, height: heatRect.height });
      if (input.hotRegion && image) drawHotRegion(doc, input.hotRegion, image, heatRect);
    } else {
      drawImagePanel(doc, heatmap, heatX, top, panelSize);
    }
    caption(
      doc,
      `Model attention (Grad-CAM), not a segmentation.${input.hotRegion ? ' Box: region of highest attention.' : ''}`,
      heatX,
      top + panelSize + 5,
      panelSize,
    );
  }
  doc.y = top + panelSize + captionHeight;
}

function drawAnnotations(doc: Doc, input: ReportInput): void {
  const { left, width } = content(doc);
  const columns = [
    { title: '#', width: 24 },
    { title: 'Note', width: width - 24 - 120 - 108 },
    { title: 'Author', width: 120 },
    { title: 'Date', width: 108 },
  ];
  const pad = 4;
  const headerHeight = 16;
  sectionHeading(doc, 'Annotations', headerHeight + 20);

  if (input.annotations.length === 0) {
    doc.font(FONT).fontSize(9.5).fillColor(COLOR.muted).text('No annotations.', left, doc.y, { width });
    return;
  }

  const drawHeaderRow = () => {
    const y = doc.y;
    let x = left;
    for (const column of columns) {
      doc.font(FONT_BOLD).fontSize(8.5).fillColor(COLOR.muted).text(column.title, x + pad, y + 4, { width: column.width - 2 * pad, lineBreak: false });
      x += column.width;
    }
    doc.save().lineWidth(0.75).moveTo(left, y + headerHeight).lineTo(left + width, y + headerHeight).stroke(COLOR.rule).restore();
    doc.y = y + headerHeight;
  };

  drawHeaderRow();
  input.annotations.forEach((annotation, i) => {
    const cells = [
      String(i + 1),
      pdfText(annotation.text),
      pdfText(annotation.createdBy?.name) || MISSING,
      formatDateTime(annotation.createdAt),
    ];
    doc.font(FONT).fontSize(9);
    const height =
      Math.max(...cells.map((cell, c) => doc.heightOfString(cell, { width: (columns[c]?.width ?? 0) - 2 * pad }))) + 2 * pad;
    if (doc.y + height > bottom(doc)) {
      doc.addPage();
      doc.font(FONT_BOLD).fontSize(10).fillColor(COLOR.accent).text('Annotations (continued)', left, doc.y, { width });
      doc.y += 4;
      drawHeaderRow();
    }
    const y = doc.y;
    if (i % 2 === 1) doc.save().rect(left, y, width, height).fill(COLOR.zebra).restore();
    let x = left;
    cells.forEach((cell, c) => {
      const columnWidth = columns[c]?.width ?? 0;
      doc
        .font(c === 0 ? FONT_BOLD : FONT)
        .fontSize(9)
        .fillColor(COLOR.text)
        .text(cell, x + pad, y + pad, { width: columnWidth - 2 * pad });
      x += columnWidth;
    });
    doc.y = y + height;
  });
}

function drawFooters(doc: Doc, input: ReportInput, missingCharacters: number): void {
  const { start, count } = doc.bufferedPageRange();
  for (let i = start; i < start + count; i++) {
    doc.switchToPage(i);
    const { left, width } = content(doc);
    const y = doc.page.height - MARGIN.bottom + 18;
    // Writing inside the bottom margin would otherwise make pdfkit start a new page.
    doc.page.margins.bottom = 0;
    rule(doc, y - 6);
    // No width on the left-hand lines: with a width pdfkit wraps even when lineBreak is false.
    doc
      .font(FONT)
      .fontSize(7.5)
      .fillColor(COLOR.muted)
      .text(`ImageMedix scan report · scan ${pdfText(input.scan.id)} · generated ${formatDateTime(input.generatedAt)}`, left, y, {
        lineBreak: false,
      });
    doc
      .font(FONT_BOLD)
      .text('Not for diagnostic use without physician review · Research software, not a medical device', left, y + 10, {
        lineBreak: false,
      });
    doc.font(FONT).text(`Page ${i - start + 1} of ${count}`, left + width - 70, y, { width: 70, align: 'right', lineBreak: false });
    if (missingCharacters > 0) {
      // A name or note with a character left out must not read as complete.
      const characters = missingCharacters === 1 ? '1 character' : `${missingCharacters} characters`;
      doc
        .font(FONT_BOLD)
        .fillColor(COLOR.danger)
        .text(
          `This report could not print ${characters} (shown as ${MISSING_GLYPH}): read the names and notes in ImageMedix.`,
          left,
          y + 20,
          { lineBreak: false },
        );
    }
    doc.page.margins.bottom = MARGIN.bottom;
  }
}

// ---------------------------------------------------------------------------------------------
// Images

interface PreparedImage {
  png: Buffer;
  /** Size of the original image: the coordinate space of annotations and the hot region. */
  width: number;
  height: number;
}

interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Normalises to an 8-bit PNG pdfkit can embed, downscaled so reports stay small. */
async function prepareImage(source: Buffer): Promise<PreparedImage | null> {
  try {
    const { width, height } = await sharp(source).metadata();
    if (!width || !height) return null;
    const png = await sharp(source)
      .resize({ width: MAX_IMAGE_PX, height: MAX_IMAGE_PX, fit: 'inside', withoutEnlargement: true })
      .png()
      .toBuffer();
    return { png, width, height };
  } catch {
    // An undecodable image should not cost the reader the rest of the report; the panel says so.
    return null;
  }
}

/** Draws the image fitted into a square panel; returns where the image landed. */
function drawImagePanel(doc: Doc, image: PreparedImage | null, x: number, y: number, size: number): Rect | null {
  doc.save().rect(x, y, size, size).fill(COLOR.panel).restore();
  if (!image) {
    doc.font(FONT_ITALIC).fontSize(9).fillColor('#bbbbbb').text('Image could not be rendered', x, y + size / 2 - 5, { width: size, align: 'center' });
    return null;
  }
  const scale = Math.min(size / image.width, size / image.height);
  const rect = {
    x: x + (size - image.width * scale) / 2,
    y: y + (size - image.height * scale) / 2,
    width: image.width * scale,
    height: image.height * scale,
  };
  doc.image(image.png, rect.x, rect.y, { width: rect.width, height: rect.height });
  return rect;
}

function drawMarkers(doc: Doc, annotations: ReportInput['annotations'], image: PreparedImage, rect: Rect): void {
  const scale = rect.width / image.width;
  annotations.forEach((annotation, i) => {
    const number = String(i + 1);
    const cx = rect.x + clamp(annotation.x, 0, image.width) * scale;
    const cy = rect.y + clamp(annotation.y, 0, image.height) * scale;
    doc.font(FONT_BOLD).fontSize(7);
    const radius = Math.max(6, doc.widthOfString(number) / 2 + 2.5);
    doc.save().lineWidth(0.75).circle(cx, cy, radius).fillAndStroke(COLOR.marker, '#000000').restore();
    doc.fillColor('#000000').text(number, cx - radius, cy - 2.6, { width: 2 * radius, align: 'center', lineBreak: false });
  });
}

function drawHotRegion(doc: Doc, region: NonNullable<ReportInput['hotRegion']>, image: PreparedImage, rect: Rect): void {
  const scale = rect.width / image.width;
  const x = clamp(region.x, 0, image.width);
  const y = clamp(region.y, 0, image.height);
  const width = clamp(region.width, 0, image.width - x);
  const height = clamp(region.height, 0, image.height - y);
  if (width <= 0 || height <= 0) return;
  doc
    .save()
    .lineWidth(1.5)
    .rect(rect.x + x * scale, rect.y + y * scale, width * scale, height * scale)
    .stroke(COLOR.hotRegion)
    .restore();
}

// ---------------------------------------------------------------------------------------------
// Layout helpers

function content(doc: Doc): { left: number; width: number } {
  const { left, right } = doc.page.margins;
  return { left, width: doc.page.width - left - right };
}

function bottom(doc: Doc): number {
  return doc.page.height - doc.page.margins.bottom;
}

function ensureSpace(doc: Doc, height: number): void {
  if (doc.y + height > bottom(doc)) doc.addPage();
}

function rule(doc: Doc, y: number): void {
  const { left, width } = content(doc);
  doc.save().lineWidth(0.75).moveTo(left, y).lineTo(left + width, y).stroke(COLOR.rule).restore();
}

/** A section title, moved to the next page unless `keepWith` points of content fit under it. */
function sectionHeading(doc: Doc, title: string, keepWith: number): void {
  ensureSpace(doc, 24 + keepWith);
  const { left, width } = content(doc);
  doc.font(FONT_BOLD).fontSize(12).fillColor(COLOR.accent).text(title, left, doc.y, { width });
  rule(doc, doc.y + 1);
  doc.y += 7;
}

function subheading(doc: Doc, title: string, x: number, y: number, width: number): void {
  doc.font(FONT_BOLD).fontSize(12).fillColor(COLOR.accent).text(title, x, y, { width });
  doc.save().lineWidth(0.75).moveTo(x, doc.y + 1).lineTo(x + width, doc.y + 1).stroke(COLOR.rule).restore();
  doc.y += 7;
}

function label(doc: Doc, text: string, x: number, y: number): void {
  doc.font(FONT).fontSize(8.5).fillColor(COLOR.muted).text(text, x, y, { lineBreak: false });
  doc.y = y + doc.currentLineHeight(true);
}

function caption(doc: Doc, text: string, x: number, y: number, width: number): void {
  doc.font(FONT_ITALIC).fontSize(8).fillColor(COLOR.muted).text(text, x, y, { width, align: 'center' });
}

/** Label/value rows; values wrap within the column. Returns the y below the last row. */
function keyValues(doc: Doc, x: number, y: number, width: number, rows: Array<[string, string | null | undefined]>): number {
  const labelWidth = 78;
  let rowY = y;
  for (const [key, value] of rows) {
    const text = pdfText(value) || MISSING;
    doc.font(FONT).fontSize(9.5);
    doc.y = rowY;
    ensureSpace(doc, Math.min(doc.heightOfString(text, { width: width - labelWidth }), 60));
    rowY = doc.y;
    doc.font(FONT).fontSize(8.5).fillColor(COLOR.muted).text(key, x, rowY + 1, { width: labelWidth - 6, height: 11, ellipsis: true });
    doc.font(FONT).fontSize(9.5).fillColor(COLOR.text).text(text, x + labelWidth, rowY, { width: width - labelWidth });
    rowY = doc.y + 3;
  }
  return rowY;
}

function callout(doc: Doc, title: string, body: string, color: string, background: string): void {
  const { left, width } = content(doc);
  const pad = 8;
  const text = pdfText(body) || MISSING;
  const titleHeight = doc.font(FONT_BOLD).fontSize(10).heightOfString(title, { width: width - 2 * pad });
  const bodyHeight = doc.font(FONT).fontSize(9.5).heightOfString(text, { width: width - 2 * pad });
  const height = pad + titleHeight + 3 + bodyHeight + pad;
  ensureSpace(doc, Math.min(height, 120));
  const top = doc.y;
  if (top + height <= bottom(doc)) {
    doc.save().lineWidth(1).rect(left, top, width, height).fillAndStroke(background, color).restore();
  }
  doc.font(FONT_BOLD).fontSize(10).fillColor(color).text(title, left + pad, top + pad, { width: width - 2 * pad });
  doc.font(FONT).fontSize(9.5).fillColor(COLOR.text).text(text, left + pad, doc.y + 3, { width: width - 2 * pad });
  doc.y += pad + 8;
}

function collect(doc: Doc): Promise<Buffer> {
  const chunks: Buffer[] = [];
  return new Promise((resolve, reject) => {
    doc.on('data', (chunk: Buffer) => chunks.push(chunk));
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------
// Text

/** Characters outside Latin-1 that WinAnsi (and so Helvetica in pdfkit) can still show. */
const WIN_ANSI_EXTRA = new Set('€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ');

/**
 * Cleans text for the page (control characters out). On the Helvetica fallback it also keeps
 * only WinAnsi: accents it cannot show are stripped (ő becomes o) and anything else (Ω, 王,
 * emoji) becomes '?'.
 */
function pdfText(value: string | null | undefined): string {
  if (value === null || value === undefined) return '';
  if (!winAnsiOnly) return value.replace(/\r\n?/g, '\n').replace(/\t/g, ' ').replace(/[\p{Cc}\p{Cf}]/gu, (c) => (c === '\n' ? c : '')).trim();
  let out = '';
  for (const char of value.replace(/\r\n?/g, '\n')) {
    if (isWinAnsi(char)) out += char;
    else if (char === '\t') out += ' ';
    else if (/\p{Cc}|\p{Cf}/u.test(char)) continue;
    else {
      const base = char.normalize('NFKD').replace(/\p{M}/gu, '');
      out += base !== '' && [...base].every(isWinAnsi) ? base : '?';
    }
  }
  return out.trim();
}

function isWinAnsi(char: string): boolean {
  const code = char.codePointAt(0) ?? 0;
  return char === '\n' || (code >= 0x20 && code <= 0x7e) || (code >= 0xa0 && code <= 0xff) || WIN_ANSI_EXTRA.has(char);
}

function formatDate(date: Date | null | undefined): string {
  if (!date || Number.isNaN(date.getTime())) return MISSING;
  return date.toISOString().slice(0, 10);
}

function formatDateTime(date: Date | null | undefined): string {
  if (!date || Number.isNaN(date.getTime())) return MISSING;
  return `${date.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

/**
 * A model's probability to one decimal. One that rounds to 100.0% or 0.0% is printed as "> 99.9%"
 * or "< 0.1%": a reader takes "100.0%" as certainty, which no model's output is (as in web/src/lib/percent.ts).
 */
function formatPercent(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return MISSING;
  const text = (value * 100).toFixed(1);
  if (text === '100.0') return '> 99.9%';
  if (text === '0.0' || text === '-0.0') return '< 0.1%';
  return `${text}%`;
}

/** 'no_tumor' -> 'No tumor', 'confirmed' -> 'Confirmed'. */
function humanize(value: string | null | undefined): string {
  const text = pdfText(value).replace(/[_-]+/g, ' ').trim();
  return text ? text.charAt(0).toUpperCase() + text.slice(1) : MISSING;
}

function scanTypeLabel(scanType: ReportInput['scan']['scanType']): string {
  return scanType ? scanTypeSpec(scanType).displayName : MISSING;
}

function differs(
  modelFinding: NonNullable<ReportInput['modelFinding']>,
  finding: NonNullable<ReportInput['finding']>,
): boolean {
  return modelFinding.summary !== finding.summary || modelFinding.confidence !== finding.confidence;
}

function clamp(value: number, min: number, max: number): number {
  return Number.isFinite(value) ? Math.min(Math.max(value, min), max) : min;
}
