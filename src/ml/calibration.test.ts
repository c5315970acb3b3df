/**
 * Operating points and site calibration: which temperature and threshold serving uses, that
 * each named point changes the answer as its threshold says and the result names it, and that
 * a site calibration is used only for the model file it was fitted on.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { createTestApp } from '../../test/helpers/app.js';
import { captureLog, leakedMarkers } from '../../test/helpers/log-capture.js';
import { calibrationNotices, listModelSummaries } from '../analysis/models.js';
import { readSiteCalibration, resolveCalibration, siteCalibrationPath, type SiteCalibration } from './calibration.js';
import { analyzeImage } from './inference.js';
import { ModelRegistry, parseManifest, type ModelManifest } from './registry.js';
import { fixture, loadTestModels, TEST_MODELS_DIR } from './testing.js';

const { registry, skip } = await loadTestModels();
after(() => registry.close());

const chestManifest = async (): Promise<ModelManifest> =>
  parseManifest(JSON.parse(await readFile(path.join(TEST_MODELS_DIR, 'chest-xray.json'), 'utf8')));

function withPoints(m: ModelManifest, points: Record<string, number>, def?: string): ModelManifest {
  const operatingPoints = Object.fromEntries(Object.entries(points).map(([name, threshold]) => [name, { threshold }]));
  return { ...m, decision: { ...m.decision, operatingPoints, ...(def ? { defaultOperatingPoint: def } : {}) } };
}

function site(m: ModelManifest, over: Partial<SiteCalibration> = {}): SiteCalibration {
  return {
    model: { id: m.id, version: m.version, sha256: m.sha256 },
    temperature: 1.7,
    operatingPoints: { screening: { threshold: 0.2 }, balanced: { threshold: 0.6 } },
    data: { dir: '/site', counts: { normal: 60, bacterial: 40, viral: 40 } },
    date: '2026-12-01T00:00:00Z',
    ...over,
  };
}

describe('resolving the calibration in use', { skip: skip['chest-xray'] }, () => {
  it('uses the manifest default point, or the one asked for, and refuses an unknown name listing the points', async () => {
    const m = withPoints(await chestManifest(), { screening: 0.1, balanced: 0.5 });
    const def = resolveCalibration(m, null);
    assert.deepEqual([def.source, def.operatingPoint, def.threshold], ['model', 'screening', 0.1]);
    assert.equal(def.temperature, m.calibration.temperature);
    const balanced = resolveCalibration(m, null, 'balanced');
    assert.deepEqual([balanced.operatingPoint, balanced.threshold], ['balanced', 0.5]);
    assert.equal(resolveCalibration(withPoints(m, { screening: 0.1, balanced: 0.5 }, 'balanced'), null).operatingPoint, 'balanced');
    assert.throws(() => resolveCalibration(m, null, 'rule-out'), /operating point "rule-out" is not defined .* it has screening, balanced/);
  });

  it('a 1.0.0 manifest without points serves its single threshold as screening', async () => {
    const m = await chestManifest();
    const legacy = { ...m, decision: { positiveLabels: ['bacterial', 'viral'], positiveThreshold: 0.06 } };
    const c = resolveCalibration(legacy, null);
    assert.deepEqual([c.operatingPoint, c.threshold, Object.keys(c.operatingPoints)], ['screening', 0.06, ['screening']]);
  });

  it("a site calibration replaces temperature and thresholds, and only for the model file it was fitted on", async () => {
    const m = withPoints(await chestManifest(), { screening: 0.1, balanced: 0.5 });
    const dir = await mkdtemp(path.join(tmpdir(), 'imagemedix-cal-'));
    try {
      assert.equal(readSiteCalibration(dir, m), null, 'no file, no site calibration');
      await writeFile(siteCalibrationPath(dir, m.id), JSON.stringify(site(m)));
      const c = resolveCalibration(m, readSiteCalibration(dir, m), 'balanced');
      assert.deepEqual([c.source, c.temperature, c.threshold], ['site', 1.7, 0.6]);
      await writeFile(siteCalibrationPath(dir, m.id), JSON.stringify(site(m, { model: { id: m.id, version: '0.9.0', sha256: 'f'.repeat(64) } })));
      assert.equal(readSiteCalibration(dir, m), null, 'fitted on another model file: not used');
      await writeFile(siteCalibrationPath(dir, m.id), JSON.stringify(site(m, { temperature: -1 })));
      assert.throws(() => readSiteCalibration(dir, m), /temperature must be > 0/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a site file without the point selected (written before chest 2.0.0 had `general`) is not mixed with the manifest: the model calibration, and a notice naming the file and the command that refits it', async () => {
    const m = withPoints(await chestManifest(), { screening: 0.1, general: 0.3, balanced: 0.5 }, 'general');
    const dir = await mkdtemp(path.join(tmpdir(), 'imagemedix-cal-'));
    try {
      // The file's own command is free text (here a folder naming a ward): never repeated.
      const command = 'npm run calibrate -- --model chest-xray --data /srv/st-elsewhere-oncology/images';
      await writeFile(siteCalibrationPath(dir, m.id), JSON.stringify(site(m, { command, data: { dir: '/site images', counts: { normal: 60 } } })));
      for (const wanted of [undefined, 'general']) {
        const c = resolveCalibration(m, readSiteCalibration(dir, m), wanted);
        // Not the site's 1.7 with a threshold fitted at the manifest's temperature.
        assert.deepEqual([c.source, c.operatingPoint, c.temperature, c.threshold], ['model', 'general', m.calibration.temperature, 0.3]);
        const notice = c.siteIgnored ?? '';
        assert.ok(notice.includes(siteCalibrationPath(dir, m.id)), notice || 'no notice');
        assert.ok(notice.includes('(written 2026-12-01T00:00:00Z)'), notice);
        assert.ok(notice.includes(`fitted on chest-xray ${m.version} (sha256 ${m.sha256.slice(0, 12)}...)`), notice);
        assert.ok(notice.includes("`npm run calibrate -- --model chest-xray --data '/site images'`"), notice);
        assert.ok(!notice.includes('st-elsewhere'), notice);
        assert.match(notice, /no operating point "general" \(it has screening, balanced\).*CHEST_OPERATING_POINT to one of screening, balanced/);
      }
      // A point the file has is the site's, and only the site's points are listed with its temperature.
      const s = resolveCalibration(m, readSiteCalibration(dir, m), 'screening');
      assert.deepEqual([s.source, s.temperature, s.threshold, s.siteIgnored], ['site', 1.7, 0.2, null]);
      assert.deepEqual(Object.keys(s.operatingPoints), ['screening', 'balanced']);
      assert.throws(() => resolveCalibration(m, readSiteCalibration(dir, m), 'rule-out'), /"rule-out" is not defined .* it has screening, general, balanced/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('each operating point as served', { skip: skip['chest-xray'] }, () => {
  let dir: string;
  let calDir: string;
  let pPneumonia: number;
  let written: Record<string, number>;
  const registries: ModelRegistry[] = [];
  const load = async (point?: string, calibrationDir?: string) => {
    const r = await ModelRegistry.load({
      dir,
      only: ['chest-xray'],
      calibrationDir,
      operatingPoints: point ? { 'chest-xray': point } : {},
    });
    registries.push(r);
    return r.get('chest-xray');
  };

  before(async () => {
    // P(pneumonia) of the normal fixture as shipped, then points on either side of it.
    const shipped = await analyzeImage(registry.get('chest-xray'), await fixture('chest-xray', 'normal'), { scanType: 'chest-xray' });
    assert.ok(!shipped.result.refused && shipped.result.scanType === 'chest-xray');
    pPneumonia = shipped.result.probabilities.bacterial + shipped.result.probabilities.viral;
    dir = await mkdtemp(path.join(tmpdir(), 'imagemedix-points-'));
    calDir = await mkdtemp(path.join(tmpdir(), 'imagemedix-site-'));
    const m = await chestManifest();
    // Three different thresholds, so serving another point's threshold shows in decisionThreshold.
    const below = Math.max(0.001, pPneumonia / 2);
    const above = Math.min(0.998, pPneumonia + (1 - pPneumonia) / 2);
    const higher = Math.min(0.999, pPneumonia + (3 * (1 - pPneumonia)) / 4);
    written = { screening: below, general: above, balanced: higher };
    await writeFile(path.join(dir, 'chest-xray.json'), JSON.stringify(withPoints(m, written)));
    await copyFile(path.join(TEST_MODELS_DIR, m.file), path.join(dir, m.file));
  });
  after(async () => {
    await Promise.all(registries.map((r) => r.close()));
    await rm(dir, { recursive: true, force: true });
    await rm(calDir, { recursive: true, force: true });
  });

  for (const [point, positive] of [
    ['screening', true],
    ['general', false],
    ['balanced', false],
  ] as const) {
    it(`${point}: the normal fixture is ${positive ? 'flagged' : 'not flagged'}, and the result names the point and its threshold`, async () => {
      const model = await load(point);
      const a = await analyzeImage(model, await fixture('chest-xray', 'normal'), { scanType: 'chest-xray' });
      assert.ok(!a.result.refused && a.result.scanType === 'chest-xray');
      assert.equal(a.result.operatingPoint, point);
      assert.equal(a.result.calibration, 'model');
      assert.equal(a.result.decisionThreshold, written[point]);
      assert.equal(a.result.hasPneumonia, positive, `P(pneumonia) ${pPneumonia} vs ${written[point]}`);
    });
  }

  it('an unknown CHEST_OPERATING_POINT stops the model from loading, naming the points there are', async () => {
    await assert.rejects(load('rule-out'), /operating point "rule-out" is not defined .* screening, general, balanced/);
  });

  it('a site calibration is used and reported, in the result and in the model list', async () => {
    const m = parseManifest(JSON.parse(await readFile(path.join(dir, 'chest-xray.json'), 'utf8')));
    await writeFile(siteCalibrationPath(calDir, m.id), JSON.stringify(site(m, { operatingPoints: { screening: { threshold: 0.999 } } })));
    const model = await load('screening', calDir);
    const a = await analyzeImage(model, await fixture('chest-xray', 'bacterial'), { scanType: 'chest-xray' });
    assert.ok(!a.result.refused && a.result.scanType === 'chest-xray');
    assert.equal(a.result.calibration, 'site');
    assert.equal(a.result.decisionThreshold, 0.999);
    const listed = await listModelSummaries(dir, { calibrationDir: calDir, operatingPoints: { 'chest-xray': 'screening' } });
    assert.equal(listed[0]!.calibration, 'site');
    assert.equal(listed[0]!.temperature, 1.7);
    assert.equal((await listModelSummaries(dir))[0]!.calibration, 'model');
  });

  it('a site file without the point selected: results, the model list and the start-up notice all say the model calibration', async () => {
    const m = parseManifest(JSON.parse(await readFile(path.join(dir, 'chest-xray.json'), 'utf8')));
    // Written before `general` existed; its screening threshold would flag the normal fixture.
    await writeFile(siteCalibrationPath(calDir, m.id), JSON.stringify(site(m, { operatingPoints: { screening: { threshold: 0.001 } } })));
    const model = await load('general', calDir);
    const a = await analyzeImage(model, await fixture('chest-xray', 'normal'), { scanType: 'chest-xray' });
    assert.ok(!a.result.refused && a.result.scanType === 'chest-xray');
    assert.deepEqual([a.result.calibration, a.result.operatingPoint, a.result.decisionThreshold, a.result.hasPneumonia], ['model', 'general', written.general, false]);
    const options = { calibrationDir: calDir, operatingPoints: { 'chest-xray': 'general' } };
    const listed = (await listModelSummaries(dir, options))[0]!;
    assert.deepEqual([listed.calibration, listed.temperature, listed.operatingPoint], ['model', m.calibration.temperature, 'general']);
    const notices = await calibrationNotices(dir, options);
    assert.equal(notices.length, 1);
    assert.equal(notices[0]!.level, 'warn');
    assert.match(notices[0]!.message, /chest-xray\.site\.json .*no operating point "general"/);
    assert.deepEqual(await calibrationNotices(dir, { calibrationDir: calDir, operatingPoints: { 'chest-xray': 'screening' } }), []);
    assert.match((await calibrationNotices(dir, { operatingPoints: { 'chest-xray': 'rule-out' } }))[0]!.message, /"rule-out" is not defined/);
  });

  it('the start-up warning of a site file without the point selected, as logged: its file, model, date and data folder, not its command', async () => {
    const m = parseManifest(JSON.parse(await readFile(path.join(dir, 'chest-xray.json'), 'utf8')));
    const file = siteCalibrationPath(calDir, m.id);
    const command = 'npm run calibrate -- --model chest-xray --data /srv/st-elsewhere-oncology/images';
    await writeFile(file, JSON.stringify(site(m, { command, data: { dir: '/srv/site images', counts: { normal: 60 } } })));
    const captured = captureLog('info');
    const t = await createTestApp('pglite', { log: captured.log, env: { MODELS_DIR: dir, CALIBRATION_DIR: calDir, CHEST_OPERATING_POINT: 'general' } });
    await t.close();
    const warnings = captured.entries().filter((e) => e.level === 40 && e.model === 'chest-xray');
    assert.equal(warnings.length, 1, captured.text());
    const msg = String(warnings[0]!.msg);
    assert.match(msg, /no operating point "general"/);
    for (const said of [file, '(written 2026-12-01T00:00:00Z)', `fitted on chest-xray ${m.version} (sha256 ${m.sha256.slice(0, 12)}...)`, "--data '/srv/site images'"]) {
      assert.ok(msg.includes(said), `${said} missing from: ${msg}`);
    }
    assert.deepEqual(leakedMarkers(captured.text(), ['st-elsewhere']), [], 'the file\'s own command stays out of the log');
  });

  it('a site file fitted on another model file (chest 2.0.0 -> 2.1.0) is not used, and the start-up notice names both files and the command that refits it', async () => {
    const m = parseManifest(JSON.parse(await readFile(path.join(dir, 'chest-xray.json'), 'utf8')));
    const options = { calibrationDir: calDir, operatingPoints: { 'chest-xray': 'general' } };
    const file = siteCalibrationPath(calDir, m.id);
    const old = { id: m.id, version: '2.0.0', sha256: 'f'.repeat(64) };
    // What npm run calibrate writes, plus what must stay out of the log: image names, counts.
    const written = { ...site(m, { model: old }), data: { dir: '/srv/site images', counts: { normal: 123 }, files: ['doe-jane-1961.jpeg'] } };
    await writeFile(file, JSON.stringify(written));
    assert.equal(readSiteCalibration(calDir, m), null, 'still not used');
    assert.equal((await listModelSummaries(dir, options))[0]!.calibration, 'model');
    const notices = await calibrationNotices(dir, options);
    assert.equal(notices.length, 1, JSON.stringify(notices));
    const { level, model, message } = notices[0]!;
    assert.deepEqual([level, model], ['warn', 'chest-xray']);
    assert.ok(message.includes(file), message);
    assert.ok(message.includes(`fitted on chest-xray 2.0.0 (sha256 ffffffffffff...)`), message);
    assert.ok(message.includes(`served, chest-xray ${m.version} (sha256 ${m.sha256.slice(0, 12)}...)`), message);
    assert.ok(message.includes("`npm run calibrate -- --model chest-xray --data '/srv/site images'`"), message);
    assert.doesNotMatch(message, /doe-jane|normal/, 'no image names or counts');

    // A file that records only the sha256 of its model and no data folder: the prefix and <dir>.
    await writeFile(file, JSON.stringify({ ...written, model: { sha256: old.sha256 }, data: { counts: {} } }));
    const [bare] = await calibrationNotices(dir, options);
    assert.match(bare!.message, /fitted on sha256 ffffffffffff\.\.\., not on the model file served/);
    assert.ok(bare!.message.includes('`npm run calibrate -- --model chest-xray --data <dir>`'), bare!.message);

    // Fitted on the file served: used, and nothing to say.
    await writeFile(file, JSON.stringify(site(m, { operatingPoints: { general: { threshold: 0.5 } } })));
    assert.deepEqual(await calibrationNotices(dir, options), []);
    assert.equal((await listModelSummaries(dir, options))[0]!.calibration, 'site');
  });
});

describe('the shipped chest manifest, point by point', { skip: skip['chest-xray'] }, () => {
  const registries: ModelRegistry[] = [];
  after(() => Promise.all(registries.map((r) => r.close())));

  // The manifest file as written by scripts/calibrate-model.ts, read apart from the code that resolves it.
  const shipped = async () =>
    JSON.parse(await readFile(path.join(TEST_MODELS_DIR, 'chest-xray.json'), 'utf8')) as {
      decision: { defaultOperatingPoint: string; operatingPoints: Record<string, { threshold: number }> };
    };

  for (const point of [undefined, 'screening', 'general', 'balanced'] as const) {
    it(`${point ? `CHEST_OPERATING_POINT=${point}` : 'no CHEST_OPERATING_POINT (the default, general)'} serves that point's threshold`, async () => {
      const { decision } = await shipped();
      if (!point) assert.equal(decision.defaultOperatingPoint, 'general');
      const name = point ?? 'general';
      const threshold = decision.operatingPoints[name]!.threshold;
      const r = await ModelRegistry.load({ dir: TEST_MODELS_DIR, only: ['chest-xray'], operatingPoints: point ? { 'chest-xray': point } : {} });
      registries.push(r);
      for (const label of ['normal', 'bacterial'] as const) {
        const a = await analyzeImage(r.get('chest-xray'), await fixture('chest-xray', label), { scanType: 'chest-xray' });
        assert.ok(!a.result.refused && a.result.scanType === 'chest-xray');
        assert.deepEqual([a.result.operatingPoint, a.result.decisionThreshold], [name, threshold]);
        const p = a.result.probabilities.bacterial + a.result.probabilities.viral;
        assert.equal(a.result.hasPneumonia, p >= threshold, `${label}: P(pneumonia) ${p} vs ${threshold}`);
      }
    });
  }
});
