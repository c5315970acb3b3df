/**
 * Compiles the server (src/ into dist/, tsconfig.build.json) and copies what it reads beside
 * its modules (migrations, the scan-type router): every file under src/ that is not TypeScript.
 * `npm start` and `npm run worker` run it with --if-stale, so a fresh clone or an edited source
 * is built before the compiled server starts.
 *
 *   tsx scripts/build.ts              clean build
 *   tsx scripts/build.ts --if-stale   only when dist/ is missing or older than a source file
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = fileURLToPath(new URL('..', import.meta.url));
const srcDir = path.join(repo, 'src');
const distDir = path.join(repo, 'dist');
/** Written last, so a build that failed half-way is stale. */
const stamp = path.join(distDir, '.built');

function newestSourceMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSourceMtime(file) : statSync(file).mtimeMs);
  }
  return newest;
}

function isStale(): boolean {
  if (!existsSync(stamp)) return true;
  const inputs = [newestSourceMtime(srcDir), ...['tsconfig.json', 'tsconfig.build.json', 'package-lock.json'].map((f) => statSync(path.join(repo, f)).mtimeMs)];
  return Math.max(...inputs) > statSync(stamp).mtimeMs;
}

function build(): void {
  rmSync(distDir, { recursive: true, force: true });
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const result = spawnSync(process.execPath, [tsc, '-p', path.join(repo, 'tsconfig.build.json')], { stdio: 'inherit' });
  if (result.status !== 0) {
    console.error('build failed: see the TypeScript errors above');
    process.exit(1);
  }
  cpSync(srcDir, distDir, {
    recursive: true,
    filter: (from) => statSync(from).isDirectory() || !from.endsWith('.ts'),
  });
  writeFileSync(stamp, `${new Date().toISOString()}\n`);
}

if (!process.argv.includes('--if-stale') || isStale()) {
  console.log('compiling the server into dist/');
  build();
}
