/**
 * The clinician web app in a real browser (Debian's Chromium driven by playwright-core)
 * against a real server on loopback: a temporary database and data folder, the in-process
 * worker and the real ONNX models. It walks what a doctor does in a day, checks each page
 * with axe-core (no serious or critical violation) under the app's own CSP, and saves a
 * screenshot of each page into test-results/screenshots (docs/screenshots holds the chosen ones).
 *
 * Signing in is walked every way a person meets it: a wrong password, Google through a real
 * OpenID provider on loopback (test/oidc/provider.ts, the one the server's Google tests use),
 * a locked and a deactivated account, and a session that expires while a page is open. The
 * requests each part makes are counted against the rate limit (test-results/rate-limit.json).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import axe from 'axe-core';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { REPO_ROOT } from '../../src/platform/config.js';
import { seedScans } from '../../src/bench/seed.js';
import { uploadRequest } from '../../src/scans/test-support.js';
import { defaultWebRoot } from '../../src/web/plugin.js';
import { createTestApp, uniqueId, type TestApp, type TestUser } from '../helpers/app.js';
import { startTestIdentityProvider, type TestIdentityProvider } from '../oidc/provider.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = path.join(REPO_ROOT, 'test-results', 'screenshots');
const BRAIN_JPEG = path.join(REPO_ROOT, 'test/fixtures/images/brain-glioma-1.jpg');
const CHEST_JPEG = path.join(REPO_ROOT, 'test/fixtures/images/chest-bacterial-1.jpeg');
/** PatientID 4MR1 in its header (pydicom's MR_small). */
const DICOM_4MR1 = path.join(REPO_ROOT, 'test/fixtures/imaging/MR_small_implicit.dcm');
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

/** A free port on loopback, so the Google client's redirect URI can be known before the server starts. */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

// The rate-limit budgets of the test server: the header X-RateLimit-Limit tells which one a
// request spent (a signed-in user's or the address's), so the walk can be counted.
const ADDRESS_BUDGET = 100_000;
const USER_BUDGET = 200_000;
/** The default RATE_LIMIT_USER_MAX: one clinician's walk must fit in one window of it, with room. */
const DEFAULT_USER_MAX = 1000;

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
  let idp: TestIdentityProvider;
  const cspViolations: string[] = [];
  // The chest DICOM's own header PatientID: a file whose header names another patient is refused
  // (409) unless the uploader confirms it, as a department's files name the patient they image.
  const patientId = '9RG1';
  /** Requests that counted against the rate limit, by part of the walk and by budget. */
  const counted: Record<string, { user: number; address: number; api: number }> = {};
  let part = 'start';

  before(async () => {
    if (!defaultWebRoot()) {
      const { execFileSync } = await import('node:child_process');
      execFileSync(process.execPath, ['--import', 'tsx', 'scripts/build-web.ts'], { cwd: REPO_ROOT, stdio: 'inherit' });
    }
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const google = { clientId: 'imagemedix-web-e2e', clientSecret: 'e2e-secret-'.padEnd(40, 'x'), redirectUri: `${base}/api/auth/google/callback` };
    idp = await startTestIdentityProvider({ clients: [google] });
    t = await createTestApp('pglite', {
      worker: true,
      env: {
        GOOGLE_CLIENT_ID: google.clientId,
        GOOGLE_CLIENT_SECRET: google.clientSecret,
        GOOGLE_CALLBACK_URL: google.redirectUri,
        GOOGLE_ISSUER: idp.issuer,
        CLIENT_URL: `${base}/login`,
        // The fewest failures the configuration allows, so the lock is reached in a few tries.
        LOGIN_MAX_FAILURES: '3',
        RATE_LIMIT_MAX: String(ADDRESS_BUDGET),
        RATE_LIMIT_USER_MAX: String(USER_BUDGET),
      },
      // Links are built from the address the browser used; the test provider is http on loopback.
      adjustConfig: (config) => {
        config.publicUrl = null;
        config.google.allowInsecureIssuer = true;
      },
    });
    await t.app.listen({ port, host: '127.0.0.1' });
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
    context.on('response', (response) => {
      const tally = (counted[part] ??= { user: 0, address: 0, api: 0 });
      // Every API call, counted or not (signed image links are not), for comparison.
      if (new URL(response.url()).pathname.startsWith('/api/')) tally.api++;
      const limit = Number(response.headers()['x-ratelimit-limit']);
      if (!limit) return;
      if (limit === USER_BUDGET) tally.user++;
      else tally.address++;
    });
  });

  after(async () => {
    await context?.close();
    await t?.close();
    await idp?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
  });

  /** axe-core on the page as it is now: no serious or critical violation. */
  async function checkAccessibility(name: string, tab: Page = page) {
    // Evaluated through the debugging protocol: the page's CSP stays on for the app itself.
    await tab.evaluate(axe.source);
    const violations = await tab.evaluate(async () => {
      const result = await (window as unknown as { axe: typeof axe }).axe.run(document, {
        runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] },
      });
      return result.violations
        .filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
    });
    assert.deepEqual(violations, [], `${name}: accessibility violations`);
  }

  async function shot(name: string, tab: Page = page) {
    await tab.evaluate(() => window.scrollTo(0, 0));
    await tab.screenshot({ path: path.join(SHOTS, `${name}.png`) });
  }

  async function canvasHash(): Promise<string> {
    const data = await page.$eval('canvas.viewer-canvas', (c) => (c as HTMLCanvasElement).toDataURL('image/png'));
    return createHash('sha256').update(data).digest('hex');
  }

  /**
   * At a 390 px phone: the page does not scroll sideways, nor does any table in its box (a row
   * reads whole without a sideways swipe), and the menu and Sign out are on screen.
   */
  async function checkPhoneWidth(name: string) {
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.ok(overflow <= 0, `${name}: horizontal overflow of ${overflow}px at 390 px`);
      const scrolling = await page.evaluate(() =>
        [...document.querySelectorAll('table')]
          .map((table) => ({ name: table.caption?.textContent ?? 'a table', box: table.parentElement! }))
          .filter(({ box }) => box.scrollWidth > box.clientWidth)
          .map(({ name, box }) => `${name}: ${box.scrollWidth} px in a ${box.clientWidth} px box`),
      );
      assert.deepEqual(scrolling, [], `${name}: tables that scroll sideways at 390 px`);
      await page.screenshot({ path: path.join(SHOTS, `phone-${name}.png`), fullPage: true });
      for (const control of [page.getByRole('button', { name: 'Sign out' }), page.getByRole('link', { name: 'Patients' }).first()]) {
        const box = (await control.boundingBox())!;
        assert.ok(box.x >= 0 && box.x + box.width <= 390, `${name}: ${await control.innerText()} at x ${box.x}..${box.x + box.width} of 390 px`);
      }
    } finally {
      await page.setViewportSize({ width: 1440, height: 900 });
    }
  }

  async function signIn(user: TestUser, on: Page = page) {
    await on.getByLabel('Email').fill(user.email);
    await on.getByLabel('Password').fill(user.password);
    await on.getByRole('button', { name: 'Sign in' }).click();
  }

  /** A tab of its own (its own session) signed in as `user`, on the worklist. */
  async function signInTab(tab: Page, user: TestUser) {
    await tab.goto(`${base}/login`);
    await signIn(user, tab);
    await tab.getByRole('heading', { name: 'Worklist' }).waitFor();
  }

  test('sign in: a wrong password is said so; the right one opens the worklist', async () => {
    part = 'sign-in';
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
    part = 'upload';
    await page.getByRole('link', { name: 'Upload', exact: true }).click();
    await page.getByRole('heading', { name: 'Upload scans' }).waitFor();
    // The scan type's chosen option reads whole in its box, on a phone as on a desktop.
    for (const width of [390, 1280, 1440]) {
      await page.setViewportSize({ width, height: 900 });
      const fit = await page.getByLabel('Scan type').evaluate((select: HTMLSelectElement) => {
        const style = getComputedStyle(select);
        const pen = document.createElement('canvas').getContext('2d')!;
        pen.font = style.font;
        // Chromium draws the drop-down arrow inside the box, about 20 px of it.
        const room = select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 24;
        return { text: select.selectedOptions[0]!.text, needs: pen.measureText(select.selectedOptions[0]!.text).width, room };
      });
      assert.ok(fit.needs <= fit.room, `at ${width} px "${fit.text}" needs ${fit.needs} px, its box has ${fit.room}`);
    }
    await page.setViewportSize({ width: 1440, height: 900 });
    await page.getByLabel('New patient').check();
    // On a phone the new patient's fields take the card's width, one a row: a full name shows whole.
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      for (const field of ['Patient ID', 'Full name']) {
        const { width } = (await page.getByLabel(field).boundingBox())!;
        assert.ok(width >= 280, `${field} is ${width} px wide at 390 px`);
      }
    } finally {
      await page.setViewportSize({ width: 1440, height: 900 });
    }
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
    // Its header names its phantom (CompressedSamples^RG1), not Priya Mehta: filed once confirmed.
    const fileChestAnyway = chestItem.getByRole('button', { name: `File it under ${patientId} anyway` });
    await fileChestAnyway.waitFor();
    const chestSaid = await chestItem.locator('.upload-state').innerText();
    assert.match(chestSaid, new RegExp(`header names RG1 CompressedSamples, but you chose Priya Mehta \\(${patientId}\\)`), chestSaid);
    await fileChestAnyway.click();
    await chestItem.getByRole('link', { name: 'Open scan' }).waitFor();
    // Both move on to their results while the page watches.
    await brainItem.locator('.badge-completed, .badge-failed').waitFor({ timeout: 120_000 });
    await chestItem.locator('.badge-completed, .badge-failed').waitFor({ timeout: 120_000 });
    await shot('03-upload');

    // "New patient" with the ID of a patient of one's own: told to choose them, not to ask an
    // administrator to assign them (the server's advice for another doctor's patient).
    await page.getByLabel('New patient').check();
    await page.getByLabel('Patient ID').fill(patientId);
    await page.getByLabel('Full name').fill('Priya Mehta');
    await page.getByLabel('Scan files').setInputFiles(BRAIN_JPEG);
    await page.getByRole('button', { name: /Upload 1 file/ }).click();
    const refusal = page.getByRole('alert').filter({ hasText: patientId });
    await refusal.waitFor();
    assert.equal(
      await refusal.innerText(),
      `Patient ID ${patientId} is already your patient Priya Mehta. Choose “Existing patient” and pick them, so these scans join their record.`,
    );
  });

  test('worklist: both scans with their findings, filters by scan type and status', async () => {
    part = 'worklist';
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
    await checkPhoneWidth('worklist');
    // On a phone each scan's finding and its probability are on screen, not past a sideways scroll.
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      const cells = page.locator('tbody tr', { hasText: 'Brain MRI' }).locator('td');
      for (const cell of [cells.nth(5), cells.nth(6)]) {
        const box = (await cell.boundingBox())!;
        assert.ok(box.x >= 0 && box.x + box.width <= 390, `"${await cell.innerText()}" at x ${box.x}..${box.x + box.width} of 390 px`);
      }
    } finally {
      await page.setViewportSize({ width: 1440, height: 900 });
    }
  });

  test('viewer: heatmap toggles, an annotation is placed in image pixels, the finding is corrected, the report is a PDF', async () => {
    part = 'viewer-brain';
    await page.locator('tbody tr', { hasText: 'Brain MRI' }).getByRole('link').click();
    await page.getByRole('heading', { name: /Priya Mehta/ }).waitFor();
    await page.locator('canvas.viewer-canvas[data-ready="true"]').waitFor();
    await page.getByRole('heading', { name: 'Model finding' }).waitFor();
    // The heatmap is drawn on its first read, so it can arrive after the image.
    await page.locator('canvas.viewer-canvas[data-heatmap="ready"]').waitFor();
    assert.match(await page.locator('.model-name').innerText(), /(Brain MRI|brain-mri).* · v\d+\.\d+\.\d+/);
    assert.ok((await page.locator('.prob-chart li').count()) >= 3, 'a probability per label');
    // Each probability stays on one line, "> 99.9%" included (this glioma's top label is one).
    for (const value of await page.locator('.prob-chart .prob-value').all()) {
      const [text, lines] = await value.evaluate((el) => [el.textContent, el.getBoundingClientRect().height / parseFloat(getComputedStyle(el).fontSize)] as const);
      assert.ok(lines < 2, `"${text}" is broken over lines (${lines.toFixed(1)} ems high)`);
    }

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

    // The same by keyboard alone: choose the tool, Tab to the image, pan with the arrows (the
    // point under the centre moves), Enter places the marker there, type, Tab to Save, Enter.
    await page.getByRole('radio', { name: 'Pan' }).click();
    await page.getByRole('radio', { name: 'Annotate' }).focus();
    await page.keyboard.press('Space');
    assert.equal(await page.getByRole('radio', { name: 'Annotate' }).getAttribute('aria-checked'), 'true');
    for (let i = 0; i < 20 && !(await page.evaluate(() => document.activeElement?.classList.contains('viewer-canvas'))); i++) {
      await page.keyboard.press('Tab');
    }
    assert.ok(await page.evaluate(() => document.activeElement?.classList.contains('viewer-canvas')), 'the image is reachable with Tab');
    await page.keyboard.press('ArrowLeft');
    await page.keyboard.press('ArrowLeft');
    await page.keyboard.press('Enter');
    const kx = Number(await page.getByLabel('x (pixels)').inputValue());
    const ky = Number(await page.getByLabel('y (pixels)').inputValue());
    assert.ok(kx < width / 2 - 5 && Math.abs(ky - height / 2) <= 2, `keyboard placement at (${kx}, ${ky}) of ${width}x${height}`);
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'ann-text', 'the text field has the focus');
    await page.keyboard.type('Second focus, posterior');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Save annotation');
    await page.keyboard.press('Enter');
    await page.locator('.annotations li', { hasText: 'Second focus, posterior' }).waitFor();
    const both = (await t.app.inject({ method: 'GET', url: `/api/scans/${scanId}`, headers: doctor.auth })).json<{
      annotations: { x: number; y: number; text: string }[];
    }>();
    assert.deepEqual(both.annotations.at(-1), { ...both.annotations.at(-1), x: kx, y: ky, text: 'Second focus, posterior' });
    await page.getByRole('radio', { name: 'Pan' }).click();
    await checkAccessibility('viewer');
    await shot('04-viewer-brain');

    // Review: correct the model's finding with one of this scan type's labels.
    const labels = await page.locator('.radio-list label').allInnerTexts();
    assert.deepEqual(labels.map((l) => l.replace(/\s*\(model\)/, '').trim()).sort(), ['Glioma', 'Meningioma', 'No tumour', 'Pituitary tumour']);
    // Nothing is chosen for the physician: notes alone cannot confirm the model's finding.
    assert.equal(await page.locator('.radio-list input:checked').count(), 0);
    assert.equal(await page.getByRole('button', { name: 'Save review' }).isDisabled(), true);
    await page.getByRole('radio', { name: /^Meningioma/ }).check();
    await page.getByLabel('Notes').fill('Dural tail on contrast; meningioma favoured.');
    // Notes typed but not saved survive a look at the patient's page and back.
    await page.locator('.breadcrumb').getByRole('link', { name: 'Priya Mehta' }).click();
    await page.getByRole('heading', { name: 'Priya Mehta', exact: true }).waitFor();
    await page.goBack();
    await page.getByLabel('Notes').waitFor();
    assert.equal(await page.getByLabel('Notes').inputValue(), 'Dural tail on contrast; meningioma favoured.');
    await page.getByRole('radio', { name: /^Meningioma/ }).check();
    await page.getByRole('button', { name: 'Save review' }).click();
    await page.getByText('Correction saved.').waitFor();
    const compare = await page.locator('.compare').innerText();
    assert.match(compare, /Model\s+Glioma/i);
    assert.match(compare, /Physician\s+Meningioma/i);
    assert.match(await page.locator('.timeline').innerText(), /Reviewed by Dr\. Ana Lima/);
    await shot('05-viewer-reviewed');
    // Emptying the notes box and saving clears the notes from the finding; the earlier review
    // keeps them in the history.
    await page.getByLabel('Notes').fill('');
    const [clearing] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'PATCH' && r.url().endsWith(`/api/scans/${scanId}`)),
      page.getByRole('button', { name: 'Save review' }).click(),
    ]);
    assert.equal(clearing.status(), 200);
    const cleared = (await t.app.inject({ method: 'GET', url: `/api/scans/${scanId}`, headers: doctor.auth })).json<{
      result: { additionalNotes?: string | null };
      reviews: { result: { additionalNotes?: string | null } }[];
    }>();
    assert.equal(cleared.result.additionalNotes ?? null, null);
    assert.ok(cleared.reviews.some((r) => r.result.additionalNotes === 'Dural tail on contrast; meningioma favoured.'));

    // A colleague reviews the scan while it is open here: saving over it is refused in words,
    // the typed notes stay in the form, the colleague's review shows, and saving again works.
    const colleague = await t.app.inject({
      method: 'PATCH',
      url: `/api/scans/${scanId}`,
      headers: admin.auth,
      payload: { result: { tumorType: 'pituitary', confidence: null } },
    });
    assert.equal(colleague.statusCode, 200, colleague.body);
    await page.getByLabel('Notes').fill('Reviewed with the prior study.');
    const [refused] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'PATCH' && r.url().endsWith(`/api/scans/${scanId}`)),
      page.getByRole('button', { name: 'Save review' }).click(),
    ]);
    assert.equal(refused.status(), 412);
    await page.getByText(/Sam Okafor reviewed this finding at .+, after you opened it/).waitFor();
    assert.match(await page.locator('.compare').innerText(), /Physician\s+Pituitary tumour/i);
    assert.equal(await page.getByLabel('Notes').inputValue(), 'Reviewed with the prior study.');
    assert.equal(await page.getByRole('radio', { name: /^Meningioma/ }).isChecked(), true);
    const [resaved] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'PATCH' && r.url().endsWith(`/api/scans/${scanId}`)),
      page.getByRole('button', { name: 'Save review' }).click(),
    ]);
    assert.equal(resaved.status(), 200);
    await page.getByText('Correction saved.').waitFor();
    assert.match(await page.locator('.compare').innerText(), /Physician\s+Meningioma/i);

    // Report: generate, download, and it is a PDF.
    await page.getByRole('button', { name: 'Generate report' }).click();
    const link = page.getByRole('link', { name: 'Download PDF report' });
    await link.waitFor();
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    const file = await download.path();
    const pdf = readFileSync(file);
    assert.equal(pdf.subarray(0, 5).toString(), '%PDF-');
    assert.ok(pdf.length > 2000);

    // Asked for again with nothing changed, the server returns the stored report (200): the page
    // says in words that it is the earlier report, and links that one.
    const firstReport = new URL((await link.getAttribute('href'))!, base).pathname;
    await page.reload();
    const [again] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith(`/api/scans/${scanId}/report`)),
      page.getByRole('button', { name: 'Generate report' }).click(),
    ]);
    assert.equal(again.status(), 200);
    await page.getByRole('status').filter({ hasText: /^Nothing has changed since the report generated on .+: that report is returned, no new one was made\.$/ }).waitFor();
    assert.equal(new URL((await link.getAttribute('href'))!, base).pathname, firstReport);

    // An annotation added now is in no report yet: the page offers a new report, not the link to
    // the one made before it, and the new one is a new report (201), not the earlier one.
    await page.getByRole('radio', { name: 'Annotate' }).click();
    const area = (await page.locator('canvas.viewer-canvas').boundingBox())!;
    await page.mouse.click(area.x + area.width / 3, area.y + area.height / 3);
    await page.getByLabel('Annotation 3').fill('Added after the report');
    await page.getByRole('button', { name: 'Save annotation' }).click();
    await page.locator('.annotations li', { hasText: 'Added after the report' }).waitFor();
    await page.getByRole('radio', { name: 'Pan' }).click();
    assert.equal(await link.count(), 0, 'no link to the report made before the annotation');
    const [renewed] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith(`/api/scans/${scanId}/report`)),
      page.getByRole('button', { name: 'Generate report' }).click(),
    ]);
    assert.equal(renewed.status(), 201);
    await link.waitFor();
    assert.notEqual(new URL((await link.getAttribute('href'))!, base).pathname, firstReport);
    assert.equal(await page.getByText(/Nothing has changed since/).count(), 0, 'the earlier notice is gone');
  });

  test('viewer: window/level of the chest DICOM works on its original pixel values', async () => {
    part = 'viewer-dicom';
    await page.getByRole('link', { name: 'Worklist' }).first().click();
    // The worklist tells a physician's finding from the model's alone.
    const finding = (type: string) => page.locator('tbody tr', { hasText: type }).locator('td').nth(5).innerText();
    await page.locator('tbody tr', { hasText: 'Brain MRI' }).waitFor();
    assert.match(await finding('Brain MRI'), /^Meningioma\s+Reviewed by Dr\. Ana Lima$/);
    assert.match(await finding('Chest X-ray'), /\s+Not reviewed yet$/);
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
    const { width: w, height: h } = await page.evaluate(() => {
      const meta = document.querySelector('.meta')?.textContent ?? '';
      const m = /(\d+) × (\d+)/.exec(meta);
      return { width: Number(m?.[1]), height: Number(m?.[2]) };
    });
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

  test('viewer: a chest X-ray finding states the pneumonia probability and the threshold it was called at; its accept button reads whole', async () => {
    part = 'viewer-chest';
    const request = uploadRequest(doctor, {
      data: readFileSync(CHEST_JPEG),
      filename: 'chest-bacterial-1.jpeg',
      fields: { patientId, patientName: 'Priya Mehta', scanType: 'chest-xray' },
    });
    const uploaded = await t.app.inject(request);
    assert.equal(uploaded.statusCode, 201, uploaded.body);
    const scanId = uploaded.json<{ _id: string }>()._id;
    await page.goto(`${base}/scans/${scanId}`);
    const side = page.locator('.viewer-side');
    await side.getByRole('heading', { name: 'Model finding' }).waitFor();
    await side.locator('.decision').waitFor({ timeout: 120_000 });
    const finding = await page.getByRole('region', { name: 'Model finding' }).innerText();
    // The chest model calls pneumonia when P(bacterial) + P(viral) reaches the operating point's
    // threshold: that sum is not a label's probability in the chart, so it is named, with the threshold.
    assert.match(finding, /Probability of pneumonia \(bacterial \+ viral\) (?:[<>] )?\d+\.\d%; called pneumonia at \d+\.\d% or more \(operating point “\w+”\)/);
    assert.doesNotMatch(finding, /confidence/);
    const accept = side.getByRole('button', { name: /^Accept model finding: .*pneumonia/ });
    assert.ok(await accept.evaluate((b) => b.scrollWidth <= b.clientWidth), `"${await accept.innerText()}" is cut off`);
    await shot('12-viewer-chest');
    // On a phone the image tools wrap inside the viewer's card: none is cut off at its edge.
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      const card = (await page.locator('.viewer-main').boundingBox())!;
      for (const name of ['Heatmap', 'Opacity', 'Region box']) {
        const box = (await page.locator('label', { has: page.getByLabel(name) }).boundingBox())!;
        assert.ok(box.x + box.width <= card.x + card.width, `${name} ends at ${box.x + box.width} px, the viewer at ${card.x + card.width} px`);
      }
      // The patient's name has the page's width; the report button sits under it, on screen.
      const name = (await page.getByRole('heading', { level: 1 }).boundingBox())!;
      const report = (await page.getByRole('button', { name: 'Generate report' }).boundingBox())!;
      assert.ok(name.width >= card.width - 1, `the patient's name gets ${name.width} px of the page's ${card.width}`);
      assert.ok(report.y >= name.y + name.height && report.x + report.width <= 390, `the report button at x ${report.x}..${report.x + report.width}, y ${report.y}`);
    } finally {
      await page.setViewportSize({ width: 1440, height: 900 });
    }

    // The history and the worklist give the same number, named the same way: a bare "95.8%"
    // beside "Normal" or "Bacterial pneumonia" would read as the finding's own probability.
    const [, pneumonia, threshold] = /pneumonia \(bacterial \+ viral\) ((?:[<>] )?\d+\.\d%); called pneumonia at (\d+\.\d%)/.exec(finding)!;
    assert.match(await page.locator('.timeline').innerText(), new RegExp(`probability of pneumonia ${pneumonia} \\(called at ${threshold} or more\\)`));
    await page.goto(`${base}/?scanType=chest-xray`);
    const row = page.locator(`tbody tr[data-scan-id="${scanId}"]`);
    await row.waitFor();
    assert.equal(await page.locator('thead th').last().innerText(), 'MODEL PROBABILITY');
    assert.equal((await row.locator('td').last().innerText()).replace(/\s+/g, ' '), `${pneumonia} pneumonia called at ≥ ${threshold}`);
  });

  test('patients: search finds the patient; the patient page shows their scans and takes a note', async () => {
    part = 'patients';
    await page.getByRole('link', { name: 'Patients' }).click();
    await page.getByRole('heading', { name: 'Patients' }).waitFor();
    await page.getByLabel('Search by name or patient ID').fill('Priya');
    await page.waitForURL(/search=Priya/);
    await page.getByRole('link', { name: 'Priya Mehta' }).click();
    await page.getByRole('heading', { name: 'Priya Mehta' }).waitFor();
    // The scans are a request of their own (their pages): wait for the table, not just the heading.
    const scanRows = page.locator('table', { hasText: 'Open viewer' }).locator('tbody tr');
    await scanRows.first().waitFor();
    assert.equal(await scanRows.count(), 3);
    // Each scan says what was found and whether a physician has reviewed it, without opening it.
    const findings = await page.locator('table', { hasText: 'Open viewer' }).locator('tbody tr td:nth-child(4)').allInnerTexts();
    for (const f of findings) assert.match(f, /^\S.*\n(Reviewed by .+|Not reviewed yet)$/, `finding cell "${f}"`);
    assert.ok(findings.some((f) => /pneumonia/i.test(f)), findings.join(' | '));
    await page.getByLabel('New note').fill('Discussed findings at tumour board.');
    await page.getByLabel('Condition').fill('Headaches, 3 months');
    await page.getByLabel('Diagnosis').fill('Suspected intracranial mass');
    // A note and a medical history entry typed but not added survive opening a scan and coming back.
    await page.getByRole('link', { name: 'Open viewer' }).first().click();
    await page.locator('.viewer-side h2').first().waitFor();
    await page.goBack();
    await page.getByLabel('New note').waitFor();
    assert.equal(await page.getByLabel('New note').inputValue(), 'Discussed findings at tumour board.');
    assert.equal(await page.getByLabel('Condition').inputValue(), 'Headaches, 3 months');
    assert.equal(await page.getByLabel('Diagnosis').inputValue(), 'Suspected intracranial mass');
    await page.getByRole('button', { name: 'Add entry' }).click();
    await page.locator('.entries li', { hasText: 'Headaches, 3 months' }).waitFor();
    assert.equal(await page.getByLabel('Condition').inputValue(), '', 'an added entry leaves the form empty');
    await page.getByRole('button', { name: 'Add note' }).click();
    await page.getByText('Discussed findings at tumour board.').waitFor();
    await checkAccessibility('patient');
    await shot('08-patient');
    await checkPhoneWidth('patient');
    await page.getByRole('link', { name: 'Patients' }).first().click();
    await page.getByRole('heading', { name: 'Patients' }).waitFor();
    await page.locator('tbody tr').first().waitFor();
    await checkAccessibility('patients');
    await checkPhoneWidth('patients');
  });

  test('sign out returns to sign-in and the token is gone', async () => {
    part = 'sign-out';
    // Text typed but not saved is asked about before signing out (which forgets it) or leaving the app.
    await page.getByRole('link', { name: 'Priya Mehta' }).first().click();
    await page.getByLabel('New note').fill('Call the family about the MRI.');
    const leaving = await page.evaluate(() => {
      const event = new Event('beforeunload', { cancelable: true });
      window.dispatchEvent(event);
      return event.defaultPrevented;
    });
    assert.equal(leaving, true, 'the browser asks before the page is left');
    let asked = '';
    page.once('dialog', (dialog) => {
      asked = dialog.message();
      void dialog.dismiss();
    });
    await page.getByRole('button', { name: 'Sign out' }).click();
    assert.match(asked, /not saved yet.*Sign out and discard it\?/);
    assert.equal(await page.getByLabel('New note').inputValue(), 'Call the family about the MRI.', 'still signed in, the note kept');
    page.once('dialog', (dialog) => void dialog.accept());
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    assert.deepEqual(await page.evaluate(() => Object.keys(sessionStorage)), []);
    // Signing out on purpose keeps no page to return to: whoever signs in next starts at the worklist.
    assert.equal(new URL(page.url()).search, '');
    await page.goto(`${base}/patients`);
    await page.waitForURL(/\/login\?next=%2Fpatients/);
  });

  test('Google sign-in: "Sign in with Google" goes through the provider and back, signed in', async () => {
    part = 'google';
    const sub = '108' + String(Date.now()).slice(-12);
    idp.addAccount({ sub, email: doctor.email, emailVerified: true, name: doctor.name });
    idp.setNextSignIn({ accountId: sub });
    await page.goto(`${base}/login`);
    const button = page.getByRole('link', { name: 'Sign in with Google' });
    await button.waitFor();
    await button.click();
    // Provider, callback, then the app with the token in the fragment, which it takes and hides.
    await page.getByRole('heading', { name: 'Worklist' }).waitFor();
    assert.equal(new URL(page.url()).hash, '', 'the token is not left in the address bar');
    assert.match(await page.locator('.user-name').innerText(), /Dr\. Ana Lima/);
    assert.deepEqual(await page.evaluate(() => Object.keys(sessionStorage)), ['imagemedix.session']);
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  });

  test('a locked account and a deactivated one are told so, with what to do', async () => {
    part = 'locked-and-inactive';
    const locked = await t.user({ name: 'Dr. Lock Test' });
    /** Signs in through the form and waits for the server's answer; its status. */
    const attempt = async (user: TestUser) => {
      const answer = page.waitForResponse((r) => r.url().endsWith('/api/auth/login'));
      await signIn(user);
      return (await answer).status();
    };
    await page.goto(`${base}/login`);
    for (let i = 0; i < 3; i++) {
      assert.equal(await attempt({ ...locked, password: `wrong-${i}` }), 401);
      await page.getByRole('alert').filter({ hasText: /Wrong email or password/ }).waitFor();
    }
    // The lock is reached: even the right password is refused, and the page says for how long.
    assert.equal(await attempt(locked), 429);
    const alert = page.getByRole('alert').filter({ hasText: /locked/ });
    await alert.waitFor();
    assert.match(
      await alert.innerText(),
      /Too many failed sign-ins for this account: signing in to it is locked for 15 minutes\. Try again then, or ask an administrator to unlock your account\./,
    );
    await checkAccessibility('sign in (locked)');
    await shot('11-sign-in-locked');

    const inactive = await t.user({ name: 'Dr. Former Staff' });
    const off = await t.app.inject({ method: 'PATCH', url: `/api/users/users/${inactive.id}`, headers: admin.auth, payload: { isActive: false } });
    assert.equal(off.statusCode, 200);
    assert.equal(await attempt(inactive), 403);
    await page.getByRole('alert').filter({ hasText: /deactivated/ }).waitFor();
    assert.match(
      await page.getByRole('alert').innerText(),
      /This account is deactivated\. Ask an administrator to activate it, then sign in again\./,
    );
    assert.equal(new URL(page.url()).pathname, '/login');
  });

  test('an expired session returns to sign-in and, signed in again, to the page that was open', async () => {
    part = 'expiry';
    // A second server whose tokens live the shortest lifetime the configuration allows.
    const short = await createTestApp('pglite', { env: { JWT_EXPIRES_IN: '1m' }, adjustConfig: (c) => void (c.publicUrl = null) });
    const tab = await context.newPage();
    try {
      const shortBase = await short.app.listen({ port: 0, host: '127.0.0.1' });
      const nurse = await short.user({ name: 'Dr. Short Session' });
      await tab.goto(`${shortBase}/login`);
      await tab.getByLabel('Email').fill(nurse.email);
      await tab.getByLabel('Password').fill(nurse.password);
      await tab.getByRole('button', { name: 'Sign in' }).click();
      await tab.getByRole('heading', { name: 'Worklist' }).waitFor();
      const signedInAt = Date.now();
      await tab.getByRole('link', { name: 'Patients' }).click();
      await tab.getByLabel('Search by name or patient ID').fill('Nobody');
      await tab.waitForURL(/\/patients\?search=Nobody/);
      // No request is made meanwhile: the app ends the session at the token's expiry by itself.
      await tab.waitForURL(/\/login\?next=/, { timeout: 90_000 });
      const waited = Date.now() - signedInAt;
      assert.ok(waited > 50_000 && waited < 80_000, `signed out ${waited} ms after signing in (token lifetime 60 s)`);
      assert.equal(new URL(tab.url()).searchParams.get('next'), '/patients?search=Nobody');
      await tab.getByText('Your session expired. Sign in again to continue.').waitFor();
      assert.deepEqual(await tab.evaluate(() => Object.keys(sessionStorage)), []);
      await tab.getByLabel('Email').fill(nurse.email);
      await tab.getByLabel('Password').fill(nurse.password);
      await tab.getByRole('button', { name: 'Sign in' }).click();
      await tab.getByRole('heading', { name: 'Patients' }).waitFor();
      assert.equal(await tab.getByLabel('Search by name or patient ID').inputValue(), 'Nobody', 'the page comes back as it was');
    } finally {
      await tab.close();
      await short.close();
    }
  });

  test('admin: users (create, role, activation) and webhooks with their deliveries', async () => {
    part = 'admin';
    // Signing in from a page that asked for one returns there (here the patients list).
    await page.goto(`${base}/login?next=%2Fpatients`);
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

    // Locked out: an account (LOGIN_MAX_FAILURES) and a ward's network address (50 failures from it).
    // Each is lifted from this page, and lifting one does not lift the other.
    const lockedOut = await t.user({ name: 'Dr. Locked Out' });
    const ward = '203.0.113.40';
    // The account first (20 failures: over LOGIN_MAX_FAILURES, under the 50 that lock an address),
    // then the ward's address by other accounts. While both are locked the answer names the lock
    // that ends last, and the address's, started after the account's last failure, cannot end
    // sooner. Failing the account from the ward itself made that a race on a loaded machine: the
    // 50 failures took long enough for the account's lock (from its last) to outlast the address's
    // (from its first), and the answer named the account.
    for (let i = 0; i < 20; i++) await t.ctx.loginThrottle.recordFailure(lockedOut.email, '203.0.113.39');
    for (let i = 0; i < 50; i++) await t.ctx.loginThrottle.recordFailure(`ward-${i}@hospital.test`, ward);
    const login = (from: string) =>
      t.app.inject({ method: 'POST', url: '/api/auth/login', remoteAddress: from, payload: { email: lockedOut.email, password: lockedOut.password } });
    assert.match((await login(ward)).json<{ error: string }>().error, /network address/);
    await page.reload();
    await page.getByRole('button', { name: `Lift the lock on ${ward}` }).click();
    await page.getByText(`The lock on ${ward} is lifted`).waitFor();
    assert.equal(await page.getByRole('button', { name: `Lift the lock on ${ward}` }).count(), 0);
    const stillLocked = await login(ward);
    assert.equal(stillLocked.statusCode, 429, 'the account stays locked');
    assert.match(stillLocked.json<{ error: string }>().error, /for this account/);
    await page.getByRole('button', { name: 'Unlock sign-in of Dr. Locked Out' }).click();
    await page.getByText('Sign-in of Dr. Locked Out is unlocked').waitFor();
    assert.equal((await login(ward)).statusCode, 200);
    // A lock that ended while the page showed it (another administrator lifted it) is said so.
    const other = '203.0.113.41';
    for (let i = 0; i < 50; i++) await t.ctx.loginThrottle.recordFailure(`nobody-${i}@hospital.test`, other);
    await page.reload();
    const liftOther = page.getByRole('button', { name: `Lift the lock on ${other}` });
    await liftOther.waitFor();
    const elsewhere = await t.app.inject({ method: 'POST', url: `/api/users/ip-locks/${other}/unlock`, headers: admin.auth });
    assert.equal(elsewhere.statusCode, 200, elsewhere.body);
    await liftOther.click();
    await page.getByText(`The lock on ${other} had already ended: sign-ins from it are accepted.`).waitFor();
    assert.equal(await page.getByRole('alert').count(), 0, 'no error for a lock already gone');
    await checkAccessibility('users');
    await shot('09-admin-users');
    await checkPhoneWidth('users');

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

    // A receiver that is down (503): the page shows the failed attempt and when the queue retries it.
    const down = createHttpServer((req, res) => {
      req.resume();
      res.writeHead(503).end();
    });
    await new Promise<void>((resolve) => down.listen(0, '127.0.0.1', resolve));
    try {
      const downUrl = `http://127.0.0.1:${(down.address() as AddressInfo).port}/ris`;
      await page.getByLabel('Receiver URL (https)').fill(downUrl);
      await page.getByLabel('Description').fill('PACS bridge (down)');
      await page.getByRole('button', { name: 'Create webhook' }).click();
      const downRow = page.locator('tbody tr', { hasText: downUrl });
      await downRow.waitFor();
      // An event for one of the doctor's scans, published as the analysis worker does.
      // (The doctor's own tokens ended when they signed out: the admin reads.)
      const scans = await t.app.inject({ url: '/api/scans', headers: admin.auth });
      assert.equal(scans.statusCode, 200, scans.body);
      const scanId = scans.json<{ scans: { _id: string }[] }>().scans[0]!._id;
      const detail = (await t.app.inject({ url: `/api/scans/${scanId}`, headers: admin.auth })).json<{ patient: { _id: string } }>();
      await t.ctx.db.transaction((tx) =>
        t.ctx.events.publish(tx, { type: 'scan.analyzed', scanId, patientId: detail.patient._id, status: 'completed' }),
      );
      await downRow.getByRole('button', { name: 'Deliveries' }).click();
      // The newest attempt (the log reads itself again while a retry is queued; Refresh is there too).
      const retry = page.locator('tbody tr', { hasText: '503' }).first().getByText(/Next try at|Retrying now/);
      for (let i = 0; i < 60 && !(await retry.isVisible()); i++) {
        await page.getByRole('button', { name: 'Refresh' }).click();
        await page.waitForTimeout(500);
      }
      await retry.waitFor();
      assert.match(await page.locator('tbody tr', { hasText: '503' }).first().innerText(), /scan\.analyzed\s+\d+\s+Failed\s+503/);
    } finally {
      down.closeAllConnections();
      await new Promise((resolve) => down.close(resolve));
    }
    await checkAccessibility('webhooks');
    await shot('10-admin-webhooks');
    await checkPhoneWidth('webhooks');
    // On a phone the chosen webhook's card is shaded as a whole, and its two buttons do not touch.
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      const chosen = page.locator('tbody tr.selected');
      assert.notEqual(await chosen.evaluate((tr) => getComputedStyle(tr).backgroundColor), 'rgba(0, 0, 0, 0)', 'the chosen card is shaded');
      const deliveries = (await chosen.getByRole('button', { name: 'Deliveries' }).boundingBox())!;
      const remove = (await chosen.getByRole('button', { name: 'Delete' }).boundingBox())!;
      const gap = remove.x - (deliveries.x + deliveries.width);
      assert.ok(gap >= 6, `Deliveries and Delete ${gap} px apart`);
    } finally {
      await page.setViewportSize({ width: 1440, height: 900 });
    }
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
  });

  test("a patient's page shows every scan with its finding, past the scan list's 100 a page", async () => {
    part = 'many-scans';
    const busy = await t.user({ name: 'Dr. Many Scans' });
    const prefix = `${uniqueId('MANY')}-`;
    const SCANS = 120;
    // Rows only, in bulk, as the list benchmarks seed them: the page reads no scan's files.
    await seedScans(t.database.db, { doctorId: busy.id, patients: 1, scans: SCANS, patientPrefix: prefix });
    const found = await t.app.inject({ url: `/api/patients?search=${encodeURIComponent(prefix)}`, headers: busy.auth });
    const patient = found.json<{ patients: { _id: string }[] }>().patients[0]!;
    // A tab of its own (its own session), whoever the walk's tab left signed in.
    const tab = await context.newPage();
    try {
      await signInTab(tab, busy);
      await tab.goto(`${base}/patients/${patient._id}`);
      const table = tab.locator('table', { hasText: 'Open viewer' });
      const seen = new Set<string>();
      const withoutFinding: string[] = [];
      for (let n = 1; n <= 20; n++) {
        await tab.locator('table:not([aria-busy="true"])', { hasText: 'Open viewer' }).waitFor();
        const rows = await table.locator('tbody tr').evaluateAll((trs) =>
          trs.map((tr) => {
            const cells = (tr as HTMLTableRowElement).cells;
            return { href: tr.querySelector('a')?.getAttribute('href') ?? '', status: cells[2]!.innerText, finding: cells[3]!.innerText };
          }),
        );
        for (const row of rows) {
          seen.add(row.href);
          // A completed scan's finding is the model's (seeded: nothing found), not reviewed yet.
          if (row.status === 'Completed' && !/^(No tumour|Normal)\nNot reviewed yet$/.test(row.finding)) withoutFinding.push(`${row.href}: ${row.finding}`);
        }
        const next = tab.getByRole('button', { name: 'Next →' });
        if ((await next.count()) === 0 || (await next.isDisabled())) break;
        await Promise.all([tab.waitForResponse((r) => r.url().includes('/api/scans') && r.url().includes(`page=${n + 1}`)), next.click()]);
      }
      assert.equal(seen.size, SCANS, 'every scan is listed once');
      assert.deepEqual(withoutFinding, [], 'completed scans shown without their finding');
      assert.match(await tab.getByRole('navigation', { name: 'scans pages' }).innerText(), new RegExp(`${SCANS} scans`));
    } finally {
      await tab.close();
    }
  });

  test("upload: a DICOM file whose header names another patient is refused, says both IDs and the header's name, and is filed once confirmed", async () => {
    part = 'outside-study';
    const doctor = await t.user({ name: 'Dr. Outside Study' });
    const chosen = uniqueId('PT-OUT');
    // A tab of its own (its own session), whoever the walk's tab left signed in.
    const tab = await context.newPage();
    try {
      await signInTab(tab, doctor);
      await tab.goto(`${base}/upload`);
      await tab.getByLabel('New patient').check();
      await tab.getByLabel('Patient ID').fill(chosen);
      await tab.getByLabel('Full name').fill('Lena Fischer');
      await tab.getByLabel('Scan files').setInputFiles(DICOM_4MR1);
      await tab.getByRole('button', { name: /Upload 1 file/ }).click();
      const row = tab.locator('.upload-item', { hasText: 'MR_small_implicit.dcm' });
      const fileAnyway = row.getByRole('button', { name: `File it under ${chosen} anyway` });
      await fileAnyway.waitFor();
      const said = await row.locator('.upload-state').innerText();
      assert.match(said, new RegExp(`header names patient 4MR1, but you chose Lena Fischer \\(${chosen}\\)`), said);
      // Nothing was filed yet, and the upload button does not send the refused file again unconfirmed.
      assert.equal(await tab.getByRole('button', { name: /Upload .*file/ }).isDisabled(), true);
      await checkAccessibility('upload-mismatch', tab);
      await fileAnyway.click();
      // Confirmed for its PatientID, it is then refused for its PatientName (CompressedSamples^MR1):
      // the second confirmation sends both.
      await tab.getByText(`header names MR1 CompressedSamples, but you chose Lena Fischer (${chosen})`).waitFor();
      await fileAnyway.click();
      await row.getByRole('link', { name: 'Open scan' }).waitFor();
      // Filed under the chosen patient: their page lists it.
      const found = await t.app.inject({ url: `/api/patients?search=${encodeURIComponent(chosen)}`, headers: doctor.auth });
      const patient = found.json<{ patients: { _id: string; patientId: string }[] }>().patients.find((p) => p.patientId === chosen)!;
      await tab.goto(`${base}/patients/${patient._id}`);
      await tab.locator('table', { hasText: 'Open viewer' }).locator('tbody tr').first().waitFor();
      assert.equal(await tab.locator('table', { hasText: 'Open viewer' }).locator('tbody tr').count(), 1);
    } finally {
      await tab.close();
    }
  });

  test('on a phone: the worklist shows scans before its filters and no row stays shaded after a tap, a patient reads who they are then their scans, a long patient ID stays whole (the Upload page too)', async () => {
    part = 'phone';
    const doctor = await t.user({ name: 'Dr. Phone Round' });
    const name = 'Maximiliane Oberholzer-Castellanos';
    // As long as hospital IDs get: in the viewer's header it follows the name's last line.
    const longId = uniqueId('PT-2024-000123-RADIOLOGY');
    // The longest an ID may be (64): wider than a phone's line, so it is cut, never split.
    const longestId = `${uniqueId('PT')}-UNIVERSITY-HOSPITAL-ARCHIVE-RADIOLOGY-`.padEnd(64, '0');
    const scanIds: Record<string, string> = {};
    for (const [id, patientName] of [[longestId, 'Jo Li'], [longId, name]] as const) {
      const res = await t.app.inject(uploadRequest(doctor, { data: readFileSync(BRAIN_JPEG), fields: { patientId: id, patientName, scanType: 'brain-mri' } }));
      assert.equal(res.statusCode, 201, res.body);
      scanIds[id] = res.json<{ _id: string }>()._id;
    }
    const tab = await context.newPage();
    await tab.setViewportSize({ width: 390, height: 844 });
    const noSidewaysScroll = async (where: string) => {
      const { scrollWidth, innerWidth } = await tab.evaluate(() => ({ scrollWidth: document.scrollingElement!.scrollWidth, innerWidth: window.innerWidth }));
      assert.ok(scrollWidth <= innerWidth, `${where}: the page is ${scrollWidth} px wide in a ${innerWidth} px phone`);
    };
    try {
      await signInTab(tab, doctor);

      // The first scan is on the first screen, and no filter field stands before it.
      const firstRow = tab.locator('tbody tr').first();
      await firstRow.waitFor();
      const row = (await firstRow.boundingBox())!;
      assert.ok(row.y + row.height <= 844, `the first scan ends at ${row.y + row.height} px of an 844 px screen`);
      const scanType = tab.getByLabel('Scan type');
      assert.equal(await scanType.isVisible(), false, 'the filters wait behind their toggle');
      await shot('phone-worklist-first-screen', tab);
      await noSidewaysScroll('worklist');

      // A touch screen leaves :hover on the row last tapped: rows (and buttons) are shaded on hover
      // only where a pointer hovers, so coming back to the list shows no row picked out.
      const cdp = await context.newCDPSession(tab);
      await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: true, maxTouchPoints: 1 });
      try {
        assert.equal(await tab.evaluate(() => matchMedia('(hover: none)').matches), true, 'the tab is a touch screen');
        await firstRow.hover();
        assert.equal(await firstRow.evaluate((tr) => tr.matches(':hover')), true);
        const shades = await firstRow.evaluate((tr) => [tr, ...tr.querySelectorAll('td')].map((el) => getComputedStyle(el).backgroundColor));
        assert.ok(!shades.includes('rgb(245, 249, 254)'), `a row under a finger is shaded: ${shades.join(', ')}`);
      } finally {
        await cdp.send('Emulation.setTouchEmulationEnabled', { enabled: false });
        await cdp.detach();
      }

      // The toggle opens them by keyboard, says so, and the first filter is the next Tab stop.
      const toggle = tab.getByRole('button', { name: /^Filters/ });
      assert.equal(await toggle.getAttribute('aria-expanded'), 'false');
      await toggle.focus();
      await tab.keyboard.press('Enter');
      assert.equal(await toggle.getAttribute('aria-expanded'), 'true');
      await tab.keyboard.press('Tab');
      assert.equal(await tab.evaluate(() => document.activeElement?.id), 'f-status', 'Tab goes from the toggle into the filters');
      await checkAccessibility('phone-worklist-filters', tab);
      // A filter set works and the toggle, closed again, says how many are set.
      await scanType.selectOption('chest-xray');
      await tab.getByText('No scan matches these filters.').waitFor();
      await toggle.click();
      assert.equal(await toggle.getAttribute('aria-expanded'), 'false');
      assert.equal(await scanType.isVisible(), false);
      assert.match(await toggle.innerText(), /^Filters\s*1 active$/);
      await toggle.click();
      await tab.getByRole('button', { name: 'Clear filters' }).click();
      await firstRow.waitFor();
      assert.equal(await toggle.innerText(), 'Filters');

      // The viewer's header: the ID is one piece on one line, whole, after the name's two lines.
      await tab.goto(`${base}/scans/${scanIds[longId]}`);
      await tab.getByRole('heading', { name: new RegExp(name) }).waitFor();
      const idIn = (id: string) =>
        tab.locator('.viewer-header h1').getByText(id, { exact: true }).evaluate((el) => {
          const lineHeight = parseFloat(getComputedStyle(el).fontSize) * 1.6;
          return { boxes: el.getClientRects().length, height: el.getBoundingClientRect().height, lineHeight, cut: el.scrollWidth > el.clientWidth, title: el.getAttribute('title') };
        });
      const whole = await idIn(longId);
      assert.equal(whole.boxes, 1, `the ID ${longId} is split over ${whole.boxes} lines`);
      assert.ok(whole.height <= whole.lineHeight, `the ID is ${whole.height} px high, more than a line (${whole.lineHeight} px)`);
      assert.equal(whole.cut, false, 'an ID that fits the line is shown whole');
      await noSidewaysScroll('viewer');
      await shot('phone-viewer-long-id', tab);
      // The longest ID is cut at the line's end; the whole of it is in its title.
      await tab.goto(`${base}/scans/${scanIds[longestId]}`);
      await tab.getByRole('heading', { name: /Jo Li/ }).waitFor();
      const cut = await idIn(longestId);
      assert.ok(cut.boxes === 1 && cut.height <= cut.lineHeight, `the 64-character ID: ${JSON.stringify(cut)}`);
      assert.equal(cut.cut, true);
      assert.equal(cut.title, longestId);
      await noSidewaysScroll('viewer, longest ID');

      // The patient's page: who they are, then their scans within the first screen, and the
      // assigned doctors after the clinical record.
      await tab.goto(`${base}/scans/${scanIds[longId]}`);
      await tab.locator('.breadcrumb').getByRole('link', { name }).click();
      const scanRow = tab.locator('table', { hasText: 'Open viewer' }).locator('tbody tr').first();
      await scanRow.waitFor();
      const top = async (heading: string) => (await tab.getByRole('heading', { name: heading, exact: true }).boundingBox())!.y;
      const [demographics, scans, history, doctors] = [await top('Demographics'), await top('Scans'), await top('Medical history'), await top('Assigned doctors')];
      assert.ok(demographics < scans && scans < history && history < doctors, `headings at ${JSON.stringify({ demographics, scans, history, doctors })}`);
      const first = (await scanRow.boundingBox())!;
      assert.ok(first.y + first.height <= 844, `the first scan ends at ${first.y + first.height} px of an 844 px screen`);
      await noSidewaysScroll('patient');
      await checkAccessibility('phone-patient', tab);
      await shot('phone-patient-first-screen', tab);

      // The Upload page's patient picker and chosen patient: the ID on one line, whole or cut at the
      // edge (the 64-character one is), the whole of it in its title.
      await tab.goto(`${base}/upload`);
      const idOnUpload = (where: string, id: string) =>
        tab.locator(where).getByText(id, { exact: true }).evaluate((el) => ({
          boxes: el.getClientRects().length,
          cut: el.scrollWidth > el.clientWidth,
          title: el.getAttribute('title'),
        }));
      for (const [id, cutAtEdge] of [[longId, false], [longestId, true]] as const) {
        await tab.getByLabel('Search by name or patient ID').fill(id);
        await tab.locator('.pick').getByText(id, { exact: true }).waitFor();
        const picked = await idOnUpload('.pick', id);
        assert.ok(picked.boxes === 1 && picked.title === id && (!cutAtEdge || picked.cut), `${id} in the patient picker: ${JSON.stringify(picked)}`);
        await noSidewaysScroll(`upload, ${id} found`);
        await tab.locator('.pick', { hasText: id }).click();
        const chosen = await idOnUpload('.chosen', id);
        assert.ok(chosen.boxes === 1 && chosen.title === id && (!cutAtEdge || chosen.cut), `${id} chosen: ${JSON.stringify(chosen)}`);
        await noSidewaysScroll(`upload, ${id} chosen`);
        await tab.getByRole('button', { name: 'Change' }).click();
      }
      await shot('phone-upload-picker', tab);
    } finally {
      await tab.close();
    }
  });

  test("one clinician's walk fits the signed-in budget; only sign-in spends the address's", () => {
    const walk = ['sign-in', 'upload', 'worklist', 'viewer-brain', 'viewer-dicom', 'patients', 'sign-out'];
    const user = walk.reduce((n, k) => n + (counted[k]?.user ?? 0), 0);
    const address = walk.reduce((n, k) => n + (counted[k]?.address ?? 0), 0);
    writeFileSync(path.join(SHOTS, '..', 'rate-limit.json'), `${JSON.stringify({ byPart: counted, doctorWalk: { user, address } }, null, 2)}\n`);
    console.log(`rate limit: the doctor's walk made ${user} signed-in and ${address} anonymous counted requests`, counted);
    assert.ok(user > 0 && user < DEFAULT_USER_MAX / 2, `the walk's ${user} requests fit twice in the default ${DEFAULT_USER_MAX}`);
    // Anonymous requests are the sign-in page's own (Google enabled?, the login calls).
    assert.ok(address < 20, `${address} anonymous requests`);
  });

  test("the app's CSP was never violated", () => {
    assert.deepEqual(cspViolations, []);
  });
});
