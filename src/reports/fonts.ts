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
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
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

  doc.text = ((text: unknown, ...args: TextArgs) => {
    // pdfkit is given strings and numbers.
    const value = typeof text === 'string' ? text : typeof text === 'number' ? String(text) : '';
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
