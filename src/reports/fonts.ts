/**
 * Unicode text in the PDF reports. Hospitals are international: names and notes arrive in
 * Cyrillic, Greek, Arabic, Chinese... The fonts are Noto (SIL Open Font Licence), shipped by npm
 * packages so `npm install` is all a machine needs: Noto Sans (Latin, Greek, Cyrillic), Noto
 * Naskh Arabic, Noto Sans Hebrew, and Noto Sans SC (Chinese, Japanese kana, Korean Hangul).
 *
 * pdfkit draws a string in one font, so `withFallbackFonts` splits each string into runs by
 * script and draws every run in the font that has its glyphs (fontkit shapes Arabic joining
 * forms and right-to-left runs of Arabic and Hebrew). A character that none of the fonts has
 * (Thai, emoji...) is printed as MISSING_GLYPH and counted, so the report can say
 * that it left something out instead of printing an empty box nobody notices. When the packages
 * are missing, reports still render with the built-in Helvetica, which only covers WinAnsi; a
 * warning says so once.
 *
 * Text with right-to-left characters is laid out by the Unicode Bidirectional Algorithm (UAX #9,
 * bidi-js): it is broken into lines in logical order, and each line's runs are drawn in visual
 * order, so that 'גידול של 3 ס״מ' keeps its number between its words and a Hebrew paragraph
 * starts at the right.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import bidiJs from 'bidi-js';
import PDFDocument from 'pdfkit';

export type FontStyle = 'regular' | 'bold' | 'italic';
type Face = 'base' | 'arabic' | 'hebrew' | 'cjk';

const FILES: Record<Face, Record<FontStyle, { pkg: string; file: string }>> = {
  base: {
    regular: { pkg: '@embedpdf/fonts-latin', file: 'NotoSans-Regular.ttf' },
    bold: { pkg: '@embedpdf/fonts-latin', file: 'NotoSans-Bold.ttf' },
    italic: { pkg: '@embedpdf/fonts-latin', file: 'NotoSans-Italic.ttf' },
  },
  arabic: {
    regular: { pkg: '@embedpdf/fonts-arabic', file: 'NotoNaskhArabic-Regular.ttf' },
    bold: { pkg: '@embedpdf/fonts-arabic', file: 'NotoNaskhArabic-Bold.ttf' },
    italic: { pkg: '@embedpdf/fonts-arabic', file: 'NotoNaskhArabic-Regular.ttf' },
  },
  hebrew: {
    regular: { pkg: '@embedpdf/fonts-hebrew', file: 'NotoSansHebrew-Regular.ttf' },
    bold: { pkg: '@embedpdf/fonts-hebrew', file: 'NotoSansHebrew-Bold.ttf' },
    italic: { pkg: '@embedpdf/fonts-hebrew', file: 'NotoSansHebrew-Regular.ttf' },
  },
  cjk: {
    regular: { pkg: '@embedpdf/fonts-sc', file: 'NotoSansHans-Regular.otf' },
    bold: { pkg: '@embedpdf/fonts-sc', file: 'NotoSansHans-Bold.otf' },
    italic: { pkg: '@embedpdf/fonts-sc', file: 'NotoSansHans-Regular.otf' },
  },
};

const fontName = (face: Face, style: FontStyle) => `imagemedix-${face}-${style}`;
const HELVETICA: Record<FontStyle, string> = { regular: 'Helvetica', bold: 'Helvetica-Bold', italic: 'Helvetica-Oblique' };

/** The names report code passes to `doc.font()` (on a document set up by `withFallbackFonts`). */
export const REPORT_FONT: Record<FontStyle, string> = {
  regular: fontName('base', 'regular'),
  bold: fontName('base', 'bold'),
  italic: fontName('base', 'italic'),
};

/** Path of each font file, or null when a package is not installed. */
function locate(): Record<Face, Record<FontStyle, string>> | null {
  const require = createRequire(import.meta.url);
  const out = {} as Record<Face, Record<FontStyle, string>>;
  for (const face of Object.keys(FILES) as Face[]) {
    out[face] = {} as Record<FontStyle, string>;
    for (const style of Object.keys(FILES[face]) as FontStyle[]) {
      const { pkg, file } = FILES[face][style];
      let entry: string;
      try {
        entry = require.resolve(pkg);
      } catch {
        return null;
      }
      // The packages keep their fonts in fonts/ beside dist/ (their entry point).
      const fontPath = path.join(path.dirname(entry), '..', 'fonts', file);
      if (!existsSync(fontPath)) return null;
      out[face][style] = fontPath;
    }
  }
  return out;
}

let located: ReturnType<typeof locate> | undefined;
let warned = false;

/** Whether the Unicode fonts are installed (checked once per process). */
export function unicodeFontsAvailable(): boolean {
  located ??= locate();
  return located !== null;
}

const ARABIC = /[\p{Script=Arabic}]/u;
const HEBREW = /[\p{Script=Hebrew}]/u;
const CJK = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}\p{Script=Bopomofo}\u3000-\u303f\uff00-\uffef]/u;
/** Spaces and punctuation belong to the run around them. */
const NEUTRAL = /[\s\p{P}\p{S}\p{N}]/u;

function faceOf(char: string): Face | null {
  if (ARABIC.test(char)) return 'arabic';
  if (HEBREW.test(char)) return 'hebrew';
  if (CJK.test(char)) return 'cjk';
  if (NEUTRAL.test(char)) return null;
  return 'base';
}

const RIGHT_TO_LEFT: ReadonlySet<Face> = new Set(['arabic', 'hebrew']);
/** The CJK font last: it is large, and read only for what the others lack. */
const FACES: readonly Face[] = ['base', 'arabic', 'hebrew', 'cjk'];

/** What stands on the page for a character no report font has (Noto Sans has it). */
export const MISSING_GLYPH = '\uFFFD';

/** Whether `face` can draw every character of `text`. */
type Covers = (face: Face, text: string) => boolean;

interface FontRun {
  face: Face;
  text: string;
  /** Characters of the original text printed as MISSING_GLYPH in this run. */
  missing?: number;
}

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * Splits text into runs of one face each ("Иван 王小明" -> base "Иван ", cjk "王小明"). Only
 * spaces join a right-to-left run: Noto Sans Hebrew has no digits or punctuation and Noto
 * Naskh Arabic lacks brackets, hyphens and %, which would print as empty boxes, and a run's
 * spaces at its end move to the next run, where they still separate the words on the page.
 * Text is taken a grapheme at a time (a letter with its marks, an emoji with its skin tone),
 * so a character the chosen face lacks moves whole to a face that has it, or when none has it
 * becomes one MISSING_GLYPH.
 */
export function fontRuns(text: string, covers: Covers = () => true): FontRun[] {
  const runs: FontRun[] = [];
  for (const { segment } of graphemes.segment(text)) {
    const last = runs.at(-1);
    let face = faceOf(segment);
    if (face === null && last && RIGHT_TO_LEFT.has(last.face) && !/\s/u.test(segment)) face = 'base';
    let chosen = face ?? last?.face ?? 'base';
    let drawn = segment;
    let missing = 0;
    if (!covers(chosen, segment)) {
      const other = FACES.find((f) => f !== chosen && covers(f, segment));
      if (other) chosen = other;
      else [chosen, drawn, missing] = ['base', MISSING_GLYPH, 1];
    }
    if (last && chosen === last.face) {
      last.text += drawn;
      if (missing) last.missing = (last.missing ?? 0) + missing;
    } else runs.push({ face: chosen, text: drawn, ...(missing ? { missing } : {}) });
  }
  runs.forEach((run, i) => {
    const next = runs[i + 1];
    const spaces = RIGHT_TO_LEFT.has(run.face) && next ? /\s+$/u.exec(run.text) : null;
    if (spaces && next) {
      run.text = run.text.slice(0, spaces.index);
      next.text = spaces[0] + next.text;
    }
  });
  return runs;
}

type Doc = PDFKit.PDFDocument;

// bidi-js's types declare an ES default export, but its CommonJS build sets module.exports to the
// factory itself, which is what Node's `import` gives as the default.
const bidi = (bidiJs as unknown as typeof bidiJs.default)();
type EmbeddingLevels = ReturnType<typeof bidi.getEmbeddingLevels>;

/** Right-to-left letters (the scripts the report fonts have): text without any is drawn as before. */
const RIGHT_TO_LEFT_TEXT = /[\p{Script=Hebrew}\p{Script=Arabic}]/u;

const reverseGraphemes = (text: string) => Array.from(graphemes.segment(text), (g) => g.segment).reverse().join('');

/**
 * The runs of one line of `text` (`start` to `end`, inclusive) in the order they stand on the
 * page from left to right (UAX #9, L2): each run is of one face and one embedding level. A run at
 * a right-to-left level is drawn as it reads from left to right: in a right-to-left face fontkit
 * lays its glyphs out right to left itself; in the base face (digits, punctuation and spaces at
 * that level) its characters are reversed here, brackets mirrored, '(' standing as ')'.
 */
function visualRuns(text: string, embedding: EmbeddingLevels, start: number, end: number, covers: Covers): FontRun[] {
  const order = bidi.getReorderedIndices(text, embedding, start, end).slice(start, end + 1);
  const mirrored = bidi.getMirroredCharactersMap(text, embedding.levels, start, end);
  const levelOf = (index: number) => embedding.levels[index] ?? 0;
  const out: FontRun[] = [];
  for (let i = 0; i < order.length; ) {
    const first = order[i]!;
    const level = levelOf(first);
    const step = level % 2 === 1 ? -1 : 1;
    let j = i + 1;
    while (j < order.length && order[j] === order[j - 1]! + step && levelOf(order[j]!) === level) j++;
    const [from, to] = [Math.min(first, order[j - 1]!), Math.max(first, order[j - 1]!)];
    let logical = '';
    for (let k = from; k <= to; k++) logical += mirrored.get(k) ?? text[k];
    const runs = fontRuns(logical, covers);
    if (step === 1) out.push(...runs);
    else for (const run of runs.reverse()) out.push(RIGHT_TO_LEFT.has(run.face) ? run : { ...run, text: reverseGraphemes(run.text) });
    i = j;
  }
  return out;
}

/**
 * Breaks `text` from `start` to `end` (exclusive) into lines no wider than `width`, in logical
 * order (UAX #9 reorders each line after breaking): at spaces, and between graphemes in a word
 * wider than the line, as pdfkit does. Returns [start, end) of each line.
 */
function breakLines(text: string, start: number, end: number, width: number, measure: (text: string) => number): Array<[number, number]> {
  const lines: Array<[number, number]> = [];
  let lineStart = start;
  let used = 0;
  for (const match of text.slice(start, end).matchAll(/(\S*)(\s*)/gu)) {
    const [all, word = '', spaces = ''] = match;
    if (all === '') continue;
    const at = start + match.index;
    const wordWidth = measure(word);
    if (at > lineStart && used + wordWidth > width) {
      lines.push([lineStart, at]);
      [lineStart, used] = [at, 0];
    }
    if (wordWidth > width) {
      for (const { segment, index } of graphemes.segment(word)) {
        const graphemeWidth = measure(segment);
        if (used > 0 && used + graphemeWidth > width) {
          lines.push([lineStart, at + index]);
          [lineStart, used] = [at + index, 0];
        }
        used += graphemeWidth;
      }
    } else used += wordWidth;
    used += measure(spaces);
  }
  lines.push([lineStart, end]);
  return lines;
}

/** Never need a glyph: line breaks, spaces, and format characters (joiners) that shaping consumes. */
const GLYPHLESS = /[\s\p{Cc}\p{Cf}]/u;
type Glyphs = (codePoint: number) => boolean;
const glyphsOf = new Map<Face, Glyphs>();
let probe: Doc | undefined;

/**
 * Which characters a face's font has, read from the font file (once per face and process) by
 * a document used for nothing else, so that a font only looked at is not embedded in a report.
 */
function faceGlyphs(face: Face): Glyphs {
  let glyphs = glyphsOf.get(face);
  if (!glyphs) {
    probe ??= new PDFDocument({ autoFirstPage: false });
    probe.font(located![face].regular);
    // pdfkit keeps the fontkit font it opened on the document, which its types do not show.
    const font = (probe as unknown as { _font?: { font?: { hasGlyphForCodePoint?: (cp: number) => boolean } } })._font?.font;
    glyphs = font?.hasGlyphForCodePoint ? (cp) => font.hasGlyphForCodePoint!(cp) : () => true;
    glyphsOf.set(face, glyphs);
  }
  return glyphs;
}

const coveredBy: Covers = (face, text) => {
  const glyphs = faceGlyphs(face);
  for (const char of text) if (!GLYPHLESS.test(char) && !glyphs(char.codePointAt(0)!)) return false;
  return true;
};

/** How report code reads what `withFallbackFonts` set up. */
export interface ReportFonts {
  /** False when the font packages are missing and Helvetica stands in. */
  unicode: boolean;
  /** Characters drawn so far as MISSING_GLYPH because no report font has them. */
  missingCharacters(): number;
}

type TextArgs = [x?: number | PDFKit.Mixins.TextOptions, y?: number, options?: PDFKit.Mixins.TextOptions];

/**
 * Sets `doc` up for REPORT_FONT names: registers the Unicode fonts and makes `text()` draw each
 * run of a string in the font that covers it, and MISSING_GLYPH for what no font covers. When
 * the fonts are missing, the names map to Helvetica and `warn` is called (once per process).
 */
export function withFallbackFonts(doc: Doc, warn: (message: string) => void, available = unicodeFontsAvailable()): ReportFonts {
  const setFont = doc.font.bind(doc) as (name: string, size?: number) => Doc;
  const styleOf = (name: string): FontStyle => (name.endsWith('-bold') ? 'bold' : name.endsWith('-italic') ? 'italic' : 'regular');

  if (!available) {
    if (!warned) {
      warned = true;
      warn(
        'PDF reports: the Noto font packages (@embedpdf/fonts-latin, -arabic, -hebrew, -sc) are not installed; reports use Helvetica and show non-Latin characters as "?". Run npm install.',
      );
    }
    doc.font = ((name: string, size?: number) =>
      setFont(name.startsWith('imagemedix-') ? HELVETICA[styleOf(name)] : name, size)) as Doc['font'];
    return { unicode: false, missingCharacters: () => 0 };
  }

  const files = located!;
  const registered = new Set<string>();
  const use = (face: Face, style: FontStyle) => {
    const name = fontName(face, style);
    // The CJK font is large: it is only read into documents that have CJK text.
    if (!registered.has(name)) {
      doc.registerFont(name, files[face][style]);
      registered.add(name);
    }
    return name;
  };

  let style: FontStyle = 'regular';
  let missing = 0;
  const drawText = doc.text.bind(doc) as (text: string, ...args: TextArgs) => Doc;

  doc.font = ((name: string, size?: number) => {
    if (!name.startsWith('imagemedix-')) return setFont(name, size);
    style = styleOf(name);
    return setFont(use('base', style), size);
  }) as Doc['font'];

  const rtlOptions = (face: Face) => (RIGHT_TO_LEFT.has(face) ? { features: [] } : {});
  const runWidth = (run: FontRun, current: FontStyle) => {
    setFont(use(run.face, current));
    return doc.widthOfString(run.text, rtlOptions(run.face));
  };
  // pdfkit keeps these on the document without typing them.
  const state = doc as unknown as { _lineGap?: number; _fillColor?: Parameters<Doc['fillColor']> };

  /** The base embedding level of the paragraph holding index `at` (odd: right to left). */
  const paragraphLevel = (embedding: EmbeddingLevels, at: number): number =>
    embedding.paragraphs.find((p) => at >= p.start && at <= p.end)?.level ?? 0;

  /** The lines of `value`, [start, end) each, in logical order: each paragraph broken to fit `width`. */
  const bidiLines = (value: string, embedding: EmbeddingLevels, width: number | undefined, current: FontStyle): Array<[number, number]> => {
    const measure = (text: string) => fontRuns(text, coveredBy).reduce((sum, run) => sum + runWidth(run, current), 0);
    return embedding.paragraphs.flatMap((paragraph): Array<[number, number]> => {
      const end = value[paragraph.end] === '\n' ? paragraph.end : paragraph.end + 1;
      return width === undefined ? [[paragraph.start, end]] : breakLines(value, paragraph.start, end, width, measure);
    });
  };

  /**
   * Draws text that has right-to-left letters by UAX #9: embedding levels for each paragraph,
   * lines broken in logical order at the width pdfkit would use, then each line's runs drawn in
   * visual order. It keeps what callers rely on from pdfkit: alignment within the width, the y
   * below the last line, a new page when the text runs past the bottom margin (or the stop at
   * `height`), and `continued` leaving the position at the end of the last line.
   */
  const drawBidi = (value: string, [a, b, c]: TextArgs): Doc => {
    const options = (typeof a === 'object' ? a : c) ?? {};
    if (typeof a === 'number') doc.x = a;
    if (typeof b === 'number') doc.y = b;
    const { width: givenWidth, height, align, continued, lineBreak, lineGap, ellipsis: _ellipsis, features: _features, ...drawOptions } = options;
    const current = style;
    const startX = doc.x;
    const width = givenWidth ?? (lineBreak === false ? undefined : Math.max(doc.page.width - startX - doc.page.margins.right, 0));
    const gap = lineGap ?? state._lineGap ?? 0;
    const maxY = height === undefined ? doc.page.maxY() : doc.y + height;
    const embedding = bidi.getEmbeddingLevels(value);
    let [endX, endY] = [startX, doc.y];
    for (const [from, to] of bidiLines(value, embedding, lineBreak === false ? undefined : width, current)) {
      setFont(use('base', current));
      const lineHeight = doc.currentLineHeight(true);
      if (width !== undefined && doc.y + lineHeight > maxY) {
        if (height !== undefined) break;
        doc.continueOnNewPage();
        if (state._fillColor) doc.fillColor(...state._fillColor);
      }
      // Spaces that end a wrapped line take no room on it, whichever side they would stand.
      let last = to;
      while (last > from && /\s/u.test(value[last - 1]!)) last--;
      const runs = last > from ? visualRuns(value, embedding, from, last - 1, coveredBy).filter((run) => run.text !== '') : [];
      const widths = runs.map((run) => runWidth(run, current));
      const lineWidth = widths.reduce((sum, w) => sum + w, 0);
      let x = startX;
      // A right-to-left paragraph stands against the right edge unless the caller says otherwise,
      // as a Hebrew or Arabic reader expects its wrapped last line.
      const lineAlign = align ?? (paragraphLevel(embedding, from) % 2 === 1 ? 'right' : 'left');
      if (width !== undefined && lineAlign === 'right') x += width - lineWidth;
      else if (width !== undefined && lineAlign === 'center') x += (width - lineWidth) / 2;
      const y = doc.y;
      runs.forEach((run, i) => {
        missing += run.missing ?? 0;
        setFont(use(run.face, current));
        drawText(run.text, x, y, { ...drawOptions, lineBreak: false, ...rtlOptions(run.face) });
        x += widths[i]!;
      });
      [endX, endY] = [x, y];
      doc.y = width === undefined ? y : y + lineHeight + gap;
    }
    setFont(use('base', current));
    if (continued) [doc.x, doc.y] = [endX, endY];
    else doc.x = width === undefined ? endX : startX;
    return doc;
  };

  // Report code sizes boxes and rows with heightOfString before drawing: text laid out above is
  // measured the same way, in its own faces, or a Hebrew note would overflow its table row.
  const heightOfString = doc.heightOfString.bind(doc);
  doc.heightOfString = (text: string, options: PDFKit.Mixins.TextOptions = {}) => {
    const value = String(text);
    if (!RIGHT_TO_LEFT_TEXT.test(value)) return heightOfString(text, options);
    const current = style;
    const width = options.width ?? Math.max(doc.page.width - doc.x - doc.page.margins.right, 0);
    const lines = bidiLines(value, bidi.getEmbeddingLevels(value), options.lineBreak === false ? undefined : width, current).length;
    setFont(use('base', current));
    return lines * (doc.currentLineHeight(true) + (options.lineGap ?? state._lineGap ?? 0));
  };

  doc.text = ((text: unknown, ...args: TextArgs) => {
    // pdfkit is given strings and numbers.
    const value = typeof text === 'string' ? text : typeof text === 'number' ? String(text) : '';
    if (RIGHT_TO_LEFT_TEXT.test(value)) return drawBidi(value, args);
    const runs = fontRuns(value, coveredBy);
    for (const run of runs) missing += run.missing ?? 0;
    if (runs.length <= 1 && (runs[0]?.face ?? 'base') === 'base') return drawText(runs[0]?.text ?? value, ...args);
    const [a, b, c] = args;
    const options = typeof a === 'object' ? a : c;
    const position: [number?, number?] = typeof a === 'object' ? [] : [a, b];
    const current = style;
    runs.forEach((run, i) => {
      const last = i === runs.length - 1;
      setFont(use(run.face, current));
      const runOptions = {
        ...options,
        continued: last ? (options?.continued ?? false) : true,
        // pdfkit shapes a line word by word unless features are given, so a right-to-left run came
        // out with its words in left-to-right order and a space lost ("שרה כהן" printed as
        // "כהןשרה"). With features (none beyond the script's own) it shapes the run whole.
        ...(RIGHT_TO_LEFT.has(run.face) ? { features: [] } : {}),
      };
      if (i === 0) drawText(run.text, ...position, runOptions);
      else drawText(run.text, runOptions);
    });
    setFont(use('base', current));
    return doc;
  });
  return { unicode: true, missingCharacters: () => missing };
}
