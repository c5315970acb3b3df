/**
 * npm run eval -- --model <scan type> --data <dir> [--json] [--check-targets]
 *                 [--models-dir <dir>] [--limit N]
 *
 * <dir> holds one folder per label of the model and optionally reject/ (images that must be
 * refused). Prints the report; with --json the last line is the report as one JSON object.
 * With --check-targets the exit code is 1 when a release target is missed.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

import { evaluateModel, missedTargets, regressions, type EvalReport, type TargetSet } from './evaluate.js';
import { ModelRegistry } from './registry.js';
import { isScanType, SCAN_TYPE_IDS } from '../scan-types/index.js';
import { runCommand } from '../platform/process.js';

const USAGE =
  `usage: npm run eval -- --model <${SCAN_TYPE_IDS.join('|')}> --data <dir> [--json] [--check-targets] [--targets test|external] ` +
  '[--baseline <eval.json>] [--models-dir <dir>] [--limit N]';

const pct = (v: number | null | undefined) => (v === null || v === undefined ? 'n/a' : `${(v * 100).toFixed(2)}%`);
const num = (v: number) => v.toFixed(4);

function printReport(r: EvalReport): void {
  const out: string[] = [];
  out.push(`Model ${r.model.id} ${r.model.version} on ${r.dataDir}: ${r.n} labelled images`);
  out.push(`  accuracy ${pct(r.accuracy)} (a refused valid image counts as an error)`);
  out.push(`  macro-F1 ${num(r.macroF1)}   one-vs-rest AUC (macro) ${num(r.auc)}   ECE (15 bins) ${num(r.ece)}`);
  out.push('');
  out.push(`  ${'class'.padEnd(12)} ${'precision'.padStart(9)} ${'recall'.padStart(7)} ${'F1'.padStart(7)} ${'AUC'.padStart(7)} ${'n'.padStart(5)}`);
  for (const [label, m] of Object.entries(r.perClass)) {
    out.push(
      `  ${label.padEnd(12)} ${num(m.precision).padStart(9)} ${num(m.recall).padStart(7)} ${num(m.f1).padStart(7)} ${num(m.auc).padStart(7)} ${String(m.support).padStart(5)}`,
    );
  }
  out.push('');
  out.push('  confusion matrix (rows: truth, columns: answer; refused last)');
  out.push(`  ${''.padEnd(12)} ${r.labels.map((l) => l.slice(0, 10).padStart(10)).join(' ')} ${'refused'.padStart(8)}`);
  r.confusionMatrix.forEach((row, i) => {
    const label = r.labels[i]!;
    out.push(
      `  ${label.padEnd(12)} ${row.map((v) => String(v).padStart(10)).join(' ')} ${String(r.refusedByClass[label] ?? 0).padStart(8)}`,
    );
  });
  if (r.binary) {
    out.push('');
    out.push(
      `  pneumonia vs normal at ${r.operatingPoint} (${r.calibration} calibration, T ${r.temperature}): accuracy ${pct(r.binary.accuracy)}, ` +
        `sensitivity ${pct(r.binary.sensitivity)}, specificity ${pct(r.binary.specificity)}, AUC ${num(r.binary.auc)}`,
    );
    for (const [name, m] of Object.entries(r.operatingPoints ?? {})) {
      out.push(
        `    point ${name.padEnd(10)} P >= ${m.threshold}: accuracy ${pct(m.accuracy)}, sensitivity ${pct(m.sensitivity)}, specificity ${pct(m.specificity)}`,
      );
    }
  }
  out.push('');
  const byCheck = Object.entries(r.falseRefusalsByCheck).map(([k, v]) => `${k} ${v}`).join(', ');
  out.push(`  false refusals of valid images: ${pct(r.falseRefusalRate)}${byCheck ? ` (${byCheck})` : ''}`);
  if (r.reject) {
    out.push(`  refused on reject/: ${pct(r.refusalRate)} of ${r.reject.n}`);
    for (const [cat, c] of Object.entries(r.reject.byCategory)) {
      out.push(`    ${cat.padEnd(16)} ${String(c.refused).padStart(4)} / ${String(c.n).padEnd(4)} ${pct(c.refused / c.n)}`);
    }
    out.push(`    by check: ${Object.entries(r.reject.byCheck).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  } else {
    out.push('  no reject/ folder: refusal rate not measured');
  }
  out.push('');
  out.push(
    `  latency per image: end-to-end (decode, checks, model, heatmap) p50 ${r.latencyMsP50.toFixed(1)} ms, p95 ${r.latencyMsP95.toFixed(1)} ms; ` +
      `model p50 ${r.modelLatencyMsP50.toFixed(1)} ms, p95 ${r.modelLatencyMsP95.toFixed(1)} ms`,
  );
  out.push(`  on ${r.machine.cpu} x${r.machine.cpus}, Node ${r.machine.node}, onnxruntime ${r.machine.onnxruntime}`);
  console.log(out.join('\n'));
}

async function main(): Promise<number> {
  let args;
  try {
    args = parseArgs({
      options: {
        model: { type: 'string' },
        data: { type: 'string' },
        json: { type: 'boolean', default: false },
        'check-targets': { type: 'boolean', default: false },
        targets: { type: 'string', default: 'test' },
        baseline: { type: 'string' },
        'models-dir': { type: 'string' },
        limit: { type: 'string' },
        threads: { type: 'string' },
      },
    }).values;
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const id = args.model;
  if (!isScanType(id) || !args.data) {
    console.error(USAGE);
    return 2;
  }
  if (args.targets !== 'test' && args.targets !== 'external') {
    console.error('--targets must be test or external');
    return 2;
  }
  const targetSet: TargetSet = args.targets;
  const limit = args.limit === undefined ? undefined : Number(args.limit);
  if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) {
    console.error('--limit must be a positive whole number');
    return 2;
  }
  const registry = await ModelRegistry.load({
    dir: args['models-dir'] ? path.resolve(args['models-dir']) : undefined,
    intraOpNumThreads: args.threads ? Number(args.threads) : 1,
    only: [id],
  });
  if (!registry.has(id)) {
    console.error(`model ${id} is not installed in ${args['models-dir'] ?? 'models/'}`);
    return 2;
  }
  const model = registry.get(id);
  const interactive = process.stderr.isTTY;
  const report = await evaluateModel(model, path.resolve(args.data), {
    limit,
    onProgress: interactive ? (d, t) => process.stderr.write(`\r  ${d}/${t}`) : undefined,
  });
  if (interactive) process.stderr.write('\r');
  await registry.close();

  printReport(report);
  const missed = missedTargets(report, id, targetSet);
  // Always shown; only --check-targets turns a miss into a failure.
  console.log(missed.length ? `\nTARGETS MISSED (${targetSet}):\n${missed.map((m) => `  - ${m}`).join('\n')}` : `\nAll ${targetSet} targets met.`);
  // The regression gate: never below what the model card states.
  let regressed: string[] = [];
  if (args.baseline) {
    const baseline = JSON.parse(readFileSync(args.baseline, 'utf8')) as Partial<EvalReport>;
    regressed =
      baseline.model?.sha256 === report.model.sha256
        ? regressions(report, baseline)
        : [
            `the card's evaluation is of another model file (${baseline.model?.version ?? '?'}, sha256 ${baseline.model?.sha256?.slice(0, 12) ?? '?'}...) ` +
              `than the installed ${report.model.version} (${report.model.sha256.slice(0, 12)}...): regenerate it with ` +
              `EVAL_BASELINE=none scripts/eval-all.sh, then scripts/model-card.ts`,
          ];
    console.log(
      regressed.length
        ? `\nBELOW THE MODEL CARD (${args.baseline}):\n${regressed.map((m) => `  - ${m}`).join('\n')}`
        : `\nNo figure below the model card (${path.basename(args.baseline)}).`,
    );
  }
  if (args.json) console.log(JSON.stringify({ ...report, targets: { set: targetSet, met: missed.length === 0, missed } }));
  return (args['check-targets'] && missed.length) || regressed.length ? 1 : 0;
}

runCommand(main);
