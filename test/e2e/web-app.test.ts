/**
 * The clinician web app in a real browser (Debian's Chromium driven by playwright-core)
 * against a real server on loopback: a temporary database and data folder, the in-process
 * worker and the real ONNX models. It walks what a doctor does in a day, checks each page
 * with axe-core (no serious or critical violation) under the app's own CSP, and saves a
 * screenshot of each page into test-results/screenshots (docs/screenshots holds the chosen ones).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import axe from 'axe-core';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { REPO_ROOT } from '../../src/platform/config.js';
import { defaultWebRoot } from '../../src/web/plugin.js';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../helpers/app.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = path.join(REPO_ROOT, 'test-results', 'screenshots');
const BRAIN_JPEG = path.join(REPO_ROOT, 'test/fixtures/images/brain-glioma-1.jpg');
const CHEST_DICOM = path.resolve(REPO_ROOT, '../shared/datasets/dicom/cr_chest/RG1_J2KI.dcm');

// Without the background-networking flags Chromium floods a closed network with connections.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

const missing = !existsSync(CHROMIUM) ? `Chromium not found at ${CHROMIUM}` : !existsSync(CHEST_DICOM) ? `${CHEST_DICOM} missing` : null;
if (missing && process.env.CI) throw new Error(`CI requires the browser test: ${missing}`);

describe('web app in a browser', { skip: missing ?? false, timeout: 600_000 }, () => {
  let t: TestApp;
  let base: string;
  let context: BrowserContext;
  let page: Page;
  let profile: string;
  let doctor: TestUser;
  let admin: TestUser;
  const cspViolations: string[] = [];
  const patientId = uniqueId('PT-WEB');

  before(async () => {
    if (!defaultWebRoot()) {
      const { execFileSync } = await import('node:child_process');
      execFileSync(process.execPath, ['--import', 'tsx', 'scripts/build-web.ts'], { cwd: REPO_ROOT, stdio: 'inherit' });
    }
    t = await createTestApp('pglite', {
      worker: true,
      // Links are built from the address the browser used.
      adjustConfig: (config) => {
        config.publicUrl = null;
      },
    });
    base = await t.app.listen({ port: 0, host: '127.0.0.1' });
    doctor = await t.user({ name: 'Dr. Ana Lima', specialization: 'Neuroradiology' });
    admin = await t.user({ role: 'admin', name: 'Sam Okafor' });
    profile = mkdtempSync(path.join(tmpdir(), 'imagemedix-chromium-'));
    mkdirSync(SHOTS, { recursive: true });
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1440, height: 900 },
      acceptDownloads: true,
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (msg) => {
      if (/Content[- ]Security[- ]Policy/i.test(msg.text())) cspViolations.push(msg.text());
    });
  });

  after(async () => {
    await context?.close();
    await t?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  /** axe-core on the page as it is now: no serious or critical violation. */
  async function checkAccessibility(name: string) {
    // Evaluated through the debugging protocol: the page's CSP stays on for the app itself.
    await page.evaluate(axe.source);
    const violations = await page.evaluate(async () => {
      const result = await (window as unknown as { axe: typeof axe }).axe.run(document, {
        runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
      });
      return result.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
    });
    assert.deepEqual(violations, [], `${name}: accessibility violations`);
  }

  async function shot(name: string) {
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
  }

  async function canvasHash(): Promise<string> {
    const data = await page.$eval('canvas.viewer-canvas', (c) => (c as HTMLCanvasElement).toDataURL('image/png'));
    return createHash('sha256').update(data).digest('hex');
  }

  async function signIn(user: TestUser) {
    await page.getByLabel('Email').fill(user.email);
    await page.getByLabel('Password').fill(user.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  test('sign in: a wrong password is said so; the right one opens the worklist', async () => {
    await page.goto(`${base}/`);
    await page.waitForURL(/\/login/);
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    await checkAccessibility('sign in');
    await shot('01-sign-in');

    await page.getByLabel('Email').fill(doctor.email);
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').waitFor();
    assert.match(await page.getByRole('alert').innerText(), /password|credentials|invalid/i);

    await signIn(doctor);
    await page.getByRole('heading', { name: 'Worklist' }).waitFor();
    assert.equal(new URL(page.url()).pathname, '/');
    // Nothing but the session token is stored in the browser.
    const stored = await page.evaluate(() => ({ local: Object.keys(localStorage), session: Object.keys(sessionStorage) }));
    assert.deepEqual(stored, { local: [], session: ['imagemedix.session'] });
    // The session survives a reload.
    await page.reload();
    await page.getByRole('heading', { name: 'Worklist' }).waitFor();
  });

  test('upload: a brain MRI JPEG by drag and drop and a chest DICOM by file chooser for a new patient', async () => {
    await page.getByRole('link', { name: 'Upload', exact: true }).click();
    await page.getByRole('heading', { name: 'Upload scans' }).waitFor();
    await page.getByLabel('New patient').check();
    await page.getByLabel('Patient ID').fill(patientId);
    await page.getByLabel('Full name').fill('Priya Mehta');
    await page.getByLabel('Date of birth').fill('1980-05-15');
    await page.getByLabel('Scan type').selectOption('brain-mri');

    // Drag and drop: a real drop event carrying the file.
    const bytes = readFileSync(BRAIN_JPEG).toString('base64');
    const dataTransfer = await page.evaluateHandle((b64) => {
      const dt = new DataTransfer();
      const bin = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      dt.items.add(new File([bin], 'brain-glioma-1.jpg', { type: 'image/jpeg' }));
      return dt;
    }, bytes);
    await page.dispatchEvent('.dropzone', 'drop', { dataTransfer });
    await page.getByText('brain-glioma-1.jpg').waitFor();
    await checkAccessibility('upload');
    await page.getByRole('button', { name: /Upload 1 file/ }).click();
    const brainItem = page.locator('.upload-item', { hasText: 'brain-glioma-1.jpg' });
    await brainItem.getByRole('link', { name: 'Open scan' }).waitFor();

    await page.getByLabel('Scan type').selectOption('chest-xray');
    await page.getByLabel('Scan files').setInputFiles(CHEST_DICOM);
    await page.getByRole('button', { name: /Upload 1 file/ }).click();
    const chestItem = page.locator('.upload-item', { hasText: 'RG1_J2KI.dcm' });
    await chestItem.getByRole('link', { name: 'Open scan' }).waitFor();
    // Both move on to their results while the page watches.
    await brainItem.locator('.badge-completed, .badge-failed').waitFor({ timeout: 120_000 });
    await chestItem.locator('.badge-completed, .badge-failed').waitFor({ timeout: 120_000 });
    await shot('03-upload');
  });

  test('worklist: both scans with their findings, filters by scan type and status', async () => {
    await page.getByRole('link', { name: 'Worklist' }).first().click();
    await page.getByRole('heading', { name: 'Worklist' }).waitFor();
    const rows = page.locator('tbody tr');
    await rows.nth(1).waitFor();
    assert.equal(await rows.count(), 2);
    const brainRow = page.locator('tbody tr', { hasText: 'Brain MRI' });
    assert.match(await brainRow.innerText(), /Priya Mehta[\s\S]*Completed[\s\S]*%/);
    await page.getByLabel('Scan type').selectOption('chest-xray');
    await page.waitForURL(/scanType=chest-xray/);
    await page.locator('tbody tr', { hasText: 'Brain MRI' }).waitFor({ state: 'detached' });
    assert.equal(await page.locator('tbody tr').count(), 1);
    await page.getByRole('button', { name: 'Clear filters' }).click();
    await rows.nth(1).waitFor();
    await checkAccessibility('worklist');
    await shot('02-worklist');
  });

  test('viewer: heatmap toggles, an annotation is placed in image pixels, the finding is corrected, the report is a PDF', async () => {
    await page.locator('tbody tr', { hasText: 'Brain MRI' }).getByRole('link').click();
    await page.getByRole('heading', { name: /Priya Mehta/ }).waitFor();
    await page.locator('canvas.viewer-canvas[data-ready="true"]').waitFor();
    await page.getByRole('heading', { name: 'Model finding' }).waitFor();
    assert.match(await page.locator('.model-name').innerText(), /(Brain MRI|brain-mri).* · v\d+\.\d+\.\d+/);
    assert.ok((await page.locator('.prob-chart li').count()) >= 3, 'a probability per label');

    const withHeatmap = await canvasHash();
    await page.getByLabel('Heatmap').uncheck();
    const without = await canvasHash();
    assert.notEqual(withHeatmap, without, 'the heatmap overlay changes the picture');
    await page.getByLabel('Heatmap').check();
    await page.getByLabel('Opacity').fill('0.8');
    assert.notEqual(await canvasHash(), withHeatmap, 'the opacity slider changes the overlay');
    await page.getByLabel('Opacity').fill('0.45');

    // Annotate: click the image; the stored point is in the image's own pixels.
    const scanId = new URL(page.url()).pathname.split('/').pop()!;
    const detail = await t.app.inject({ method: 'GET', url: `/api/scans/${scanId}`, headers: doctor.auth });
    const { width, height } = detail.json<{ width: number; height: number }>();
    await page.getByRole('radio', { name: 'Annotate' }).click();
    const box = (await page.locator('canvas.viewer-canvas').boundingBox())!;
    await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
    const x = Number(await page.getByLabel('x (pixels)').inputValue());
    const y = Number(await page.getByLabel('y (pixels)').inputValue());
    assert.ok(Math.abs(x - width / 2) <= 2 && Math.abs(y - height / 2) <= 2, `centre click at (${x}, ${y}) of ${width}x${height}`);
    await page.getByLabel('Annotation 1').fill('Enhancing margin, compare with prior');
    await page.getByRole('button', { name: 'Save annotation' }).click();
    await page.locator('.annotations li', { hasText: 'Enhancing margin' }).waitFor();
    const stored = (await t.app.inject({ method: 'GET', url: `/api/scans/${scanId}`, headers: doctor.auth })).json<{
      annotations: { x: number; y: number; text: string }[];
    }>();
    assert.deepEqual(
      stored.annotations.map((a) => [a.x, a.y, a.text]),
      [[x, y, 'Enhancing margin, compare with prior']],
    );
    await checkAccessibility('viewer');
    await shot('04-viewer-brain');

    // Review: correct the model's finding with one of this scan type's labels.
    const labels = await page.locator('.radio-list label').allInnerTexts();
    assert.deepEqual(labels.map((l) => l.replace(/\s*\(model\)/, '').trim()).sort(), ['Glioma', 'Meningioma', 'No tumour', 'Pituitary tumour']);
    await page.getByRole('radio', { name: /^Meningioma/ }).check();
    await page.getByLabel('Notes').fill('Dural tail on contrast; meningioma favoured.');
    await page.getByRole('button', { name: 'Save review' }).click();
    await page.getByText('Correction saved.').waitFor();
    const compare = await page.locator('.compare').innerText();
    assert.match(compare, /Model\s+Glioma/i);
    assert.match(compare, /Physician\s+Meningioma/i);
    assert.match(await page.locator('.timeline').innerText(), /Reviewed by Dr\. Ana Lima/);
    await shot('05-viewer-reviewed');

    // Report: generate, download, and it is a PDF.
    await page.getByRole('button', { name: 'Generate report' }).click();
    const link = page.getByRole('link', { name: 'Download PDF report' });
    await link.waitFor();
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    const file = await download.path();
    const pdf = readFileSync(file);
    assert.equal(pdf.subarray(0, 5).toString(), '%PDF-');
    assert.ok(pdf.length > 2000);
  });

  test('viewer: window/level of the chest DICOM works on its original pixel values', async () => {
    await page.getByRole('link', { name: 'Worklist' }).first().click();
    await page.locator('tbody tr', { hasText: 'Chest X-ray' }).getByRole('link').click();
    await page.getByRole('radio', { name: 'Window/level' }).waitFor();
    const canvas = page.locator('canvas.viewer-canvas[data-ready="true"]');
    await canvas.waitFor();
    const before = await canvasHash();
    const windowBefore = await canvas.getAttribute('data-window');
    const level = page.getByLabel(/^Level \(centre\)/);
    const max = Number(await level.getAttribute('max'));
    const min = Number(await level.getAttribute('min'));
    assert.ok(max - min > 255, `the level spans the original range (${min}..${max}), not 8 bits`);
    await level.fill(String(Math.round(min + (max - min) * 0.3)));
    assert.notEqual(await canvas.getAttribute('data-window'), windowBefore);
    assert.notEqual(await canvasHash(), before, 'a new level changes the picture');
    // Measured: how long one window/level rendering of the whole image takes in the browser.
    await level.focus();
    const times: number[] = [];
    for (let i = 0; i < 15; i++) {
      const shown = await canvas.getAttribute('data-window');
      await page.keyboard.press('ArrowRight');
      await page.waitForFunction((w) => document.querySelector('canvas.viewer-canvas')?.getAttribute('data-window') !== w, shown);
      times.push(Number(await canvas.getAttribute('data-render-ms')));
    }
    times.sort((a, b) => a - b);
    const { width: w, height: h } = (await page.evaluate(() => {
      const meta = document.querySelector('.meta')?.textContent ?? '';
      const m = /(\d+) × (\d+)/.exec(meta);
      return { width: Number(m?.[1]), height: Number(m?.[2]) };
    })) as { width: number; height: number };
    const measured = { image: `${w}x${h}`, renders: times.length, medianMs: times[7], maxMs: times.at(-1) };
    writeFileSync(path.join(SHOTS, '..', 'window-level.json'), `${JSON.stringify(measured, null, 2)}\n`);
    console.log(`window/level rendering of a ${w}x${h} DICOM: median ${times[7]} ms, max ${times.at(-1)} ms`);
    assert.ok(times[7]! < 500, 'window/level keeps up with a slider');
    // The window/level tool: dragging on the image widens the window.
    await page.getByRole('radio', { name: 'Window/level' }).click();
    const afterSlider = await canvas.getAttribute('data-window');
    const box = (await canvas.boundingBox())!;
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width / 2 + 120, box.y + box.height / 2, { steps: 5 });
    await page.mouse.up();
    assert.notEqual(await canvas.getAttribute('data-window'), afterSlider, 'dragging changes the window');
    // A refusal is shown as a refusal; a finding with its probabilities.
    const side = await page.locator('.viewer-side').innerText();
    assert.match(side, /Model refused this image|Calibrated probabilities/);
    await checkAccessibility('viewer (DICOM)');
    await shot('06-viewer-dicom');

    // A 1024 px tablet: nothing is cut off sideways.
    await page.setViewportSize({ width: 1024, height: 768 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 0, `horizontal overflow of ${overflow}px at 1024 px`);
    await shot('07-viewer-1024');
    await page.setViewportSize({ width: 1440, height: 900 });
  });

  test('patients: search finds the patient; the patient page shows their scans and takes a note', async () => {
    await page.getByRole('link', { name: 'Patients' }).click();
    await page.getByRole('heading', { name: 'Patients' }).waitFor();
    await page.getByLabel('Search by name or patient ID').fill('Priya');
    await page.waitForURL(/search=Priya/);
    await page.getByRole('link', { name: 'Priya Mehta' }).click();
    await page.getByRole('heading', { name: 'Priya Mehta' }).waitFor();
    assert.equal(await page.locator('table', { hasText: 'Open viewer' }).locator('tbody tr').count(), 2);
    await page.getByLabel('New note').fill('Discussed findings at tumour board.');
    await page.getByRole('button', { name: 'Add note' }).click();
    await page.getByText('Discussed findings at tumour board.').waitFor();
    await checkAccessibility('patient');
    await shot('08-patient');
    await page.getByRole('link', { name: 'Patients' }).first().click();
    await page.getByRole('heading', { name: 'Patients' }).waitFor();
    await checkAccessibility('patients');
  });

  test('sign out returns to sign-in and the token is gone', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.deepEqual(await page.evaluate(() => Object.keys(sessionStorage)), []);
    await page.goto(`${base}/patients`);
    await page.waitForURL(/\/login\?next=%2Fpatients/);
  });

  test('admin: users (create, role, activation) and webhooks with their deliveries', async () => {
    await signIn(admin);
    await page.getByRole('heading', { name: 'Patients' }).waitFor();
    await page.getByRole('link', { name: 'Users' }).click();
    await page.getByRole('heading', { name: 'Users' }).waitFor();
    await page.getByRole('button', { name: 'New user' }).click();
    const email = `new-${uniqueId().toLowerCase()}@hospital.test`;
    await page.getByLabel('Full name').fill('Dr. Ananya Singh');
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Initial password').fill('Radiology-2025-strong!');
    await page.getByLabel('Specialization').fill('Radiology');
    await page.getByRole('button', { name: 'Create user' }).click();
    const row = page.locator('tbody tr', { hasText: email });
    await row.waitFor();
    const saved = page.waitForResponse((r) => r.request().method() === 'PATCH' && r.url().includes('/api/users/users/'));
    await row.getByLabel(/account of Dr\. Ananya Singh/).uncheck();
    await row.getByText('Inactive').waitFor();
    assert.equal((await saved).status(), 200);
    // The server has it too.
    const listed = await t.app.inject({ method: 'GET', url: '/api/users/users', headers: admin.auth });
    assert.equal(listed.json<{ email: string; isActive: boolean }[]>().find((u) => u.email === email)?.isActive, false);
    await checkAccessibility('users');
    await shot('09-admin-users');

    await page.getByRole('link', { name: 'Webhooks' }).click();
    await page.getByRole('heading', { name: 'Webhooks' }).waitFor();
    // A receiver on this machine that answers 204 (private targets are allowed in this test).
    await page.getByLabel('Receiver URL (https)').fill(`${base}/healthz`);
    await page.getByLabel('Description').fill('RIS integration');
    await page.getByRole('button', { name: 'Create webhook' }).click();
    await page.getByText(/signing secret is shown only now/).waitFor();
    assert.match(await page.locator('code.secret').innerText(), /^whsec_/);
    await page.getByRole('button', { name: 'Deliveries' }).click();
    await page.getByRole('heading', { name: 'Delivery attempts' }).waitFor();
    await checkAccessibility('webhooks');
    await shot('10-admin-webhooks');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  });

  test("the app's CSP was never violated", () => {
    assert.deepEqual(cspViolations, []);
  });
});
