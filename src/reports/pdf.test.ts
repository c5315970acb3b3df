import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import sharp from 'sharp';
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
