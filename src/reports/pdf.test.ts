import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import PDFDocument from 'pdfkit';
import sharp from 'sharp';
import { REPORT_FONT, withFallbackFonts } from './fonts.js';
import { renderReportPdf, type ReportInput } from './pdf.js';

const run = promisify(execFile);

let workDir = '';
let scanPng: Buffer;
let heatmapPng: Buffer;

before(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'imagemedix-report-'));
  // A stand-in for an axial MRI slice, and a translucent attention blob over its upper right.
  scanPng = await sharp(
    Buffer.from(
      `<svg xmlns="http://www.w3.org/2000/svg" width="320" height="256">
        <rect width="320" height="256" fill="#000"/>
        <ellipse cx="160" cy="128" rx="120" ry="100" fill="#777"/>
        <ellipse cx="160" cy="128" rx="95" ry="78" fill="#aaa"/>
        <circle cx="205" cy="95" r="22" fill="#eee"/>
      </svg>`,
    ),
  )
    .png()
    .toBuffer();
  heatmapPng = await sharp(
    Buffer.from(
      `<svg xmlns="http://www.w3.org/2000/svg" width="320" height="256">
        <defs><radialGradient id="g"><stop offset="0" stop-color="#f00" stop-opacity="0.8"/>
        <stop offset="0.6" stop-color="#ff0" stop-opacity="0.4"/><stop offset="1" stop-color="#00f" stop-opacity="0"/></radialGradient></defs>
        <circle cx="205" cy="95" r="70" fill="url(#g)"/>
      </svg>`,
    ),
  )
    .png()
    .toBuffer();
});

after(async () => {
  await rm(workDir, { recursive: true, force: true });
});

function reportInput(overrides: Partial<ReportInput> = {}): ReportInput {
  return {
    scan: {
      id: randomUUID(),
      scanType: 'brain-mri',
      scanDate: new Date('2024-03-02T00:00:00Z'),
      uploadedAt: new Date('2024-03-02T09:15:00Z'),
      status: 'reviewed',
      modality: 'MR',
      studyInstanceUid: '1.2.826.0.1.3680043.8.498.10237383882739482734827348273482734',
      originalFormat: 'dicom',
    },
    patient: { patientId: `P-${randomUUID().slice(0, 8)}`, name: 'Ada Lovelace', dateOfBirth: new Date('1961-12-10T00:00:00Z'), gender: 'female' },
    image: scanPng,
    heatmap: heatmapPng,
    hotRegion: { x: 170, y: 60, width: 70, height: 70 },
    annotations: [
      { x: 205, y: 95, text: 'Enhancing lesion, right frontal', createdAt: new Date('2024-03-03T10:00:00Z'), createdBy: { name: 'Dr Grace Hopper' } },
      { x: 100, y: 180, text: 'Mild oedema', createdAt: new Date('2024-03-03T10:05:00Z'), createdBy: null },
    ],
    finding: {
      summary: 'Tumour detected: glioma',
      confidence: 0.8734,
      probabilities: { glioma: 0.8734, meningioma: 0.0811, pituitary: 0.0301, no_tumor: 0.0154 },
      location: { label: 'Tumour location', value: 'Right frontal lobe' },
      additionalNotes: 'Recommend contrast-enhanced follow-up.',
    },
    model: { id: 'brain-mri-effnet', version: '2.1.0', name: 'Brain tumour classifier' },
    modelFinding: null,
    review: {
      reviewer: { name: 'Dr Grace Hopper', email: 'grace@example.org' },
      reviewedAt: new Date('2024-03-03T11:30:00Z'),
      status: 'confirmed',
    },
    refusalReason: null,
    generatedAt: new Date('2024-03-04T08:00:00Z'),
    generatedBy: { name: 'Dr Alan Turing' },
    ...overrides,
  };
}

async function savePdf(pdf: Buffer): Promise<string> {
  const file = join(workDir, `${randomUUID()}.pdf`);
  await writeFile(file, pdf);
  return file;
}

/** The text a reader would see, with runs of spaces from the layout collapsed. */
async function pdfToText(pdf: Buffer): Promise<string> {
  const { stdout } = await run('pdftotext', ['-layout', await savePdf(pdf), '-']);
  return stdout.replace(/[ \t]+/g, ' ');
}

async function pdfInfo(pdf: Buffer): Promise<Record<string, string>> {
  const { stdout } = await run('pdfinfo', [await savePdf(pdf)]);
  return Object.fromEntries(
    stdout
      .split('\n')
      .filter((line) => line.includes(':'))
      .map((line) => [line.slice(0, line.indexOf(':')).trim(), line.slice(line.indexOf(':') + 1).trim()]),
  );
}

describe('renderReportPdf', () => {
  it('shows the patient, scan, finding, model, review, annotations and the notice', async () => {
    const input = reportInput();
    const text = await pdfToText(await renderReportPdf(input));

    assert.match(text, /ImageMedix — Scan report/);
    assert.match(text, /NOT FOR DIAGNOSTIC USE WITHOUT PHYSICIAN REVIEW/);
    assert.match(text, /Research software, not a medical device/);
    assert.ok(text.includes(input.patient.patientId), 'patient id');
    assert.ok(text.includes('Ada Lovelace'), 'patient name');
    assert.ok(text.includes('1961-12-10'), 'date of birth');
    assert.ok(text.includes(input.scan.id), 'scan id');
    assert.match(text, /Brain MRI/);
    assert.match(text, /Tumour detected: glioma/);
    assert.match(text, /87\.3%/);
    assert.match(text, /Meningioma 8\.1%/);
    assert.match(text, /No tumor 1\.5%/);
    assert.match(text, /Right frontal lobe/);
    assert.match(text, /Recommend contrast-enhanced follow-up\./);
    assert.match(text, /Brain tumour classifier/);
    assert.match(text, /2\.1\.0/);
    assert.match(text, /Confirmed/);
    assert.match(text, /Dr Grace Hopper <grace@example\.org>/);
    assert.match(text, /2024-03-03 11:30 UTC/);
    assert.doesNotMatch(text, /Not yet reviewed/);
    assert.match(text, /Model attention \(Grad-CAM\), not a segmentation/);
    assert.match(text, /1 Enhancing lesion, right frontal Dr Grace Hopper 2024-03-03 10:00 UTC/);
    assert.match(text, /2 Mild oedema — 2024-03-03 10:05 UTC/);
    assert.match(text, /Generated 2024-03-04 08:00 UTC by Dr Alan Turing/);
    assert.match(text, /Page 1 of \d+/);
  });

  it('never prints a probability as 100.0% or 0.0%: one that rounds there reads "> 99.9%" or "< 0.1%"', async () => {
    const base = reportInput();
    const text = await pdfToText(
      await renderReportPdf(
        reportInput({
          finding: {
            ...base.finding!,
            confidence: 0.99996,
            probabilities: { glioma: 0.99996, meningioma: 0.00003, pituitary: 0.00001, no_tumor: 0.0042 },
          },
        }),
      ),
    );
    assert.doesNotMatch(text, /100\.0%/);
    assert.doesNotMatch(text, /\b0\.0%/);
    assert.match(text, /Confidence > 99\.9%/);
    assert.match(text, /Meningioma < 0\.1%/);
    assert.match(text, /No tumor 0\.4%/);
  });

  it('says when a scan has not been analysed or reviewed, and shows missing values as a dash', async () => {
    const input = reportInput({
      scan: { ...reportInput().scan, status: 'uploaded', scanDate: null, modality: null, studyInstanceUid: undefined },
      patient: { patientId: 'P-NONE', name: 'Ada Lovelace', dateOfBirth: null, gender: null },
      heatmap: null,
      hotRegion: null,
      annotations: [],
      finding: null,
      model: null,
      review: null,
    });
    const text = await pdfToText(await renderReportPdf(input));

    assert.match(text, /No analysis result: this scan has not been analysed by a model\./);
    assert.match(text, /Scan status: Uploaded/);
    assert.match(text, /Not yet reviewed by a physician/);
    assert.match(text, /No annotations\./);
    assert.match(text, /Date of birth —/);
    assert.match(text, /Modality —/);
    assert.match(text, /Model —/);
    assert.doesNotMatch(text, /Grad-CAM/);
    assert.doesNotMatch(text, /Confidence/);
    assert.match(text, /NOT FOR DIAGNOSTIC USE WITHOUT PHYSICIAN REVIEW/);
  });

  it("shows both the model's output and the physician's finding when the review changed it", async () => {
    const text = await pdfToText(
      await renderReportPdf(
        reportInput({
          finding: { summary: 'No tumour detected', confidence: null },
          modelFinding: { summary: 'Tumour detected: meningioma', confidence: 0.61 },
          review: { reviewer: { name: 'Dr Grace Hopper' }, reviewedAt: new Date('2024-03-03T11:30:00Z'), status: 'corrected' },
        }),
      ),
    );

    assert.match(text, /The physician's review changed the model's result/);
    assert.match(text, /Model output \(original\)/);
    assert.match(text, /Tumour detected: meningioma/);
    assert.match(text, /Confidence 61\.0%/);
    assert.match(text, /No tumour detected/);
    assert.match(text, /Corrected/);
  });

  it('shows why the model refused', async () => {
    const text = await pdfToText(
      await renderReportPdf(
        reportInput({
          finding: null,
          heatmap: null,
          review: null,
          refusalReason: 'Image does not look like a brain MRI (out-of-distribution score 0.93).',
        }),
      ),
    );

    assert.match(text, /The model declined to give a result/);
    assert.match(text, /Image does not look like a brain MRI \(out-of-distribution score 0\.93\)\./);
    assert.doesNotMatch(text, /No analysis result/);
  });

  it('writes a valid PDF with metadata that pdftoppm can rasterise', async () => {
    const input = reportInput();
    const pdf = await renderReportPdf(input);
    assert.equal(pdf.subarray(0, 5).toString('latin1'), '%PDF-');

    const info = await pdfInfo(pdf);
    assert.equal(info.Title, `ImageMedix scan report ${input.scan.id}`);
    assert.equal(info.Author, 'ImageMedix');
    assert.match(info.CreationDate ?? '', /2024/);
    assert.match(info['Page size'] ?? '', /595\.28 x 841\.89/); // A4

    const outDir = await mkdtemp(join(workDir, 'raster-'));
    await run('pdftoppm', ['-png', '-r', '40', '-f', '1', '-l', '1', await savePdf(pdf), join(outDir, 'page')]);
    const [page] = await readdir(outDir);
    assert.ok(page, 'pdftoppm wrote page 1');
    const { width, height } = await sharp(join(outDir, page)).metadata();
    assert.ok(width && height && height > width, 'portrait page');
  });

  it('prints names and notes in any script as written: Cyrillic, Greek, Arabic and Hebrew (right to left, words in order), Chinese, accented Latin', async () => {
    const names = {
      cyrillic: 'Иван Петров',
      greek: 'Γιώργος Παπαδόπουλος',
      arabic: 'محمد علي',
      hebrew: 'שרה כהן',
      chinese: '王小明',
      latin: 'Zoë Łukasz Dvořák Ñúñez',
    };
    const text = await pdfToText(
      await renderReportPdf(
        reportInput({
          patient: { patientId: 'P-UNI', name: `${names.cyrillic} ${names.chinese}`, dateOfBirth: null, gender: null },
          generatedBy: { name: `Dr ${names.greek}` },
          annotations: [
            { x: 1, y: 1, text: `Reviewed with ${names.latin}`, createdAt: new Date('2024-03-03T10:00:00Z'), createdBy: { name: names.arabic } },
            { x: 2, y: 2, text: names.hebrew, createdAt: new Date('2024-03-03T10:05:00Z'), createdBy: { name: names.latin } },
          ],
        }),
      ),
    );
    for (const [script, name] of Object.entries(names)) {
      // pdftotext writes a right-to-left run in logical or visual order depending on layout; either
      // way its words stay in order with their spaces (a name of two words is not swapped or joined).
      const rtl = script === 'arabic' || script === 'hebrew';
      const found = text.includes(name) || (rtl && text.includes([...name].reverse().join('')));
      assert.ok(found, `${script} "${name}" is in the PDF text:\n${text}`);
    }
    assert.doesNotMatch(text, /\?\?/);
  });

  it('marks Thai and emoji, which no report font has, says on every page how many characters it left out, and logs only the count', async () => {
    const warnings: string[] = [];
    const pdf = await renderReportPdf(
      reportInput({
        patient: { patientId: 'P-THAI', name: 'Somchai สมชาย', dateOfBirth: null, gender: null },
        annotations: [
          // One emoji with its skin tone is one character to the reader.
          { x: 1, y: 1, text: 'Stable 👍🏽 ok', createdAt: new Date('2024-03-03T10:00:00Z'), createdBy: { name: 'Dr Grace Hopper' } },
        ],
      }),
      { warn: (m) => warnings.push(m) },
    );
    const text = await pdfToText(pdf);
    const pages = Number((await pdfInfo(pdf)).Pages);

    assert.ok(text.includes('Somchai \uFFFD\uFFFD\uFFFD\uFFFD\uFFFD'), `Thai letters marked:\n${text}`);
    assert.ok(text.includes('Stable \uFFFD ok'), 'the emoji is marked');
    assert.equal(
      text.match(/This report could not print 6 characters \(shown as \uFFFD\): read the names and notes in ImageMedix\./g)?.length,
      pages,
      'every page says so',
    );
    assert.deepEqual(warnings, ['PDF report: 6 characters have no glyph in the report fonts and printed as U+FFFD']);
    assert.doesNotMatch(warnings.join('\n'), /Somchai|Stable/);
  });

  it('says nothing about missing characters when every character printed', async () => {
    const warnings: string[] = [];
    const text = await pdfToText(await renderReportPdf(reportInput(), { warn: (m) => warnings.push(m) }));
    assert.doesNotMatch(text, /could not print|\uFFFD/);
    assert.deepEqual(warnings, []);
  });

  it('splits text into runs by script, each drawn in the font that covers it', async () => {
    const fonts = await import('./fonts.js');
    assert.equal(fonts.unicodeFontsAvailable(), true, 'the npm font packages are installed');
    assert.deepEqual(
      fonts.fontRuns('Иван 王小明 (محمد) גידול 3 cm').map((r) => [r.face, r.text]),
      [
        ['base', 'Иван '],
        ['cjk', '王小明 ('],
        ['arabic', 'محمد'],
        // Digits and brackets are drawn in the base face: the right-to-left faces have none.
        ['base', ') '],
        ['hebrew', 'גידול'],
        ['base', ' 3 cm'],
      ],
    );
  });

  it('without the font packages, a report still renders in Helvetica, with "?" for what it cannot show, and one warning', async () => {
    const warnings: string[] = [];
    const render = () =>
      renderReportPdf(
        reportInput({ patient: { patientId: 'P-UNI', name: 'Zoë Ωmega 王 Łukasz', dateOfBirth: null, gender: null } }),
        { warn: (m) => warnings.push(m), withoutUnicodeFonts: true },
      );
    const text = await pdfToText(await render());
    await render();
    assert.match(text, /Zoë \?mega \? \?ukasz/);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /font packages .* not installed.*npm install/);
  });

  it('wraps long text and continues many annotations on the following pages', async () => {
    const longNote = `${'The lesion margins are irregular and there is surrounding signal change. '.repeat(25)}END-OF-NOTE`;
    const annotations = Array.from({ length: 70 }, (_, i) => ({
      x: (i * 37) % 320,
      y: (i * 53) % 256,
      text: i === 69 ? 'Last annotation marker' : `Observation ${i + 1}: ${'finding detail '.repeat(i % 4 === 0 ? 12 : 1)}`,
      createdAt: new Date('2024-03-03T10:00:00Z'),
      createdBy: { name: 'Dr Grace Hopper' },
    }));
    const pdf = await renderReportPdf(
      reportInput({
        annotations,
        finding: { ...reportInput().finding!, additionalNotes: longNote },
        patient: { patientId: 'P-LONG', name: `Ada ${'Augusta '.repeat(12)}Lovelace`, dateOfBirth: null, gender: null },
      }),
    );
    const text = await pdfToText(pdf);
    const pages = Number((await pdfInfo(pdf)).Pages);

    assert.ok(pages >= 3, `expected several pages, got ${pages}`);
    assert.match(text, /END-OF-NOTE/);
    assert.match(text, /Annotations \(continued\)/);
    assert.match(text, /70 Last annotation marker/);
    assert.match(text, new RegExp(`Page ${pages} of ${pages}`));
    // Wrapped, not clipped: every word of the long note survives.
    assert.equal(text.match(/irregular/g)?.length, 25);
  });

  it('still renders the report when the scan image cannot be decoded', async () => {
    const text = await pdfToText(await renderReportPdf(reportInput({ image: Buffer.from('not an image'), heatmap: null })));
    assert.match(text, /Image could not be rendered/);
    assert.match(text, /Tumour detected: glioma/);
  });
});

/** A right-to-left string as it reads from left to right on the page. */
const mirror = (text: string) => [...text].reverse().join('');

/**
 * Draws `text` as report code does and returns each line as it stands on the page, read from left
 * to right. pdfkit is asked where it puts each piece of text; a Hebrew or Arabic piece is laid out
 * right to left by fontkit, so it reads backwards from the left.
 */
function drawnLines(text: string, options: PDFKit.Mixins.TextOptions = { width: 400 }): string[] {
  const doc = new PDFDocument({ size: 'A4', margins: { top: 50, bottom: 50, left: 50, right: 50 } });
  const pieces: Array<{ text: string; x: number; y: number }> = [];
  const internals = doc as unknown as { _fragment: (text: string, x: number, y: number, options: object) => void };
  const fragment = internals._fragment.bind(doc);
  internals._fragment = (piece, x, y, fragmentOptions) => {
    if (piece !== '') pieces.push({ text: piece, x, y });
    fragment(piece, x, y, fragmentOptions);
  };
  withFallbackFonts(doc, () => undefined);
  doc.font(REPORT_FONT.regular).fontSize(10).text(text, 50, 100, options);
  doc.end();
  const ys = [...new Set(pieces.map((p) => p.y))].sort((a, b) => a - b);
  return ys.map((y) =>
    pieces
      .filter((p) => p.y === y)
      .sort((a, b) => a.x - b.x)
      .map((p) => (/[\p{Script=Hebrew}\p{Script=Arabic}]/u.test(p.text) ? mirror(p.text) : p.text))
      .join('')
      .replace(/\s+/g, ' ')
      .trim(),
  );
}

describe('right-to-left text in reports (Unicode bidirectional algorithm)', () => {
  it('prints a Hebrew sentence with a number, a Latin word and brackets in reading order, right to left', () => {
    assert.deepEqual(drawnLines('בדיקת MRI הראתה גידול של 12 ס״מ (בצד ימין).'), [
      // Read from the right: the first word at the right edge, 12 and MRI left to right in their
      // places, and the brackets mirrored to face the words they enclose.
      `.(${mirror('בצד ימין')}) ${mirror('ס״מ')} 12 ${mirror('הראתה גידול של')} MRI ${mirror('בדיקת')}`,
    ]);
  });

  it('prints an Arabic sentence with a number and a Latin word in reading order', () => {
    assert.deepEqual(drawnLines('ورم بحجم 12 سم في MRI'), [`MRI ${mirror('سم في')} 12 ${mirror('ورم بحجم')}`]);
  });

  it('keeps a left-to-right sentence in order around a Hebrew name followed by a number', () => {
    // UAX #9: the number after the name belongs to the right-to-left run, so it stands at its left.
    assert.deepEqual(drawnLines('Reviewed with שרה כהן 42 times today'), [`Reviewed with 42 ${mirror('שרה כהן')} times today`]);
  });

  it('wraps a long right-to-left paragraph in reading order: its first line holds its start, at the right', () => {
    const sentence = 'גידול של 3 ס״מ בצד ימין של המוח (ראה MRI). ';
    const lines = drawnLines(`הערה ארוכה: ${sentence.repeat(6)}סוף`, { width: 300 });

    assert.ok(lines.length >= 3, `wrapped onto several lines:\n${lines.join('\n')}`);
    assert.ok(lines[0]!.endsWith(mirror('הערה ארוכה:')), `the first line ends at the right with the start:\n${lines.join('\n')}`);
    assert.ok(lines.at(-1)!.startsWith(mirror('סוף')), `the last line ends at the left with the end:\n${lines.join('\n')}`);
    // Every line reads right to left, sentence after sentence: nothing is lost or doubled.
    const read = lines.map((line) => mirror(line).replace(/\)(.*?)\(/g, '($1)')).join(' ');
    assert.equal(read.match(/\(ראה IRM\)/g)?.length, 6, read);
    assert.equal(read.match(/גידול של 3 ס״מ/g)?.length, 6, read);
  });

  it('sets a right-to-left paragraph against the right edge, its short last line too; a left-to-right one stays left', () => {
    const leftEdges = (text: string) => {
      const doc = new PDFDocument({ size: 'A4', margins: { top: 50, bottom: 50, left: 50, right: 50 } });
      const pieces: Array<{ x: number; y: number }> = [];
      const internals = doc as unknown as { _fragment: (text: string, x: number, y: number, options: object) => void };
      const fragment = internals._fragment.bind(doc);
      internals._fragment = (piece, x, y, fragmentOptions) => {
        if (piece.trim() !== '') pieces.push({ x, y });
        fragment(piece, x, y, fragmentOptions);
      };
      withFallbackFonts(doc, () => undefined);
      doc.font(REPORT_FONT.regular).fontSize(10).text(text, 50, 100, { width: 300 });
      doc.end();
      return [...new Set(pieces.map((p) => p.y))].sort((a, b) => a - b).map((y) => Math.min(...pieces.filter((p) => p.y === y).map((p) => p.x)));
    };
    const hebrew = leftEdges(`${'גידול של 3 ס״מ בצד ימין של המוח (ראה MRI). '.repeat(3)}סוף`);
    assert.ok(hebrew.length >= 2, 'wrapped');
    assert.ok(hebrew.at(-1)! > 150, `the last line starts at x ${hebrew.at(-1)}, not at the left margin`);
    // A left-to-right sentence with a Hebrew name keeps the left edge.
    assert.deepEqual(leftEdges('Reviewed with שרה כהן 42 times today'), [50]);
  });

  it('prints a Hebrew annotation in the report in reading order (pdftotext)', async () => {
    const text = await pdfToText(
      await renderReportPdf(
        reportInput({
          annotations: [{ x: 1, y: 1, text: 'גידול של 12 ס״מ בצד ימין', createdAt: new Date('2024-03-03T10:00:00Z'), createdBy: { name: 'Dr Grace Hopper' } }],
        }),
      ),
    );
    // pdftotext writes pieces left to right as they stand, each right-to-left one in logical order
    // between embedding marks (dropped here).
    assert.match(text.replace(/[\u202a-\u202e]/gu, ''), /ס״מ בצד ימין\s*12\s*גידול של/u, text);
  });
});

