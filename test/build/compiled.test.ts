/**
 * `npm start` runs the compiled server (dist/, from scripts/build.ts): it must start and answer
 * its health checks, and its worker threads (image decoding, analysis) must load as compiled
 * .js files, not only as .ts under tsx.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';

const run = promisify(execFile);
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('the compiled server (npm run build, npm start)', () => {
  before(async () => {
    // What `npm start` runs first: a build when dist/ is missing or older than src/.
    await run(process.execPath, ['--import', 'tsx', 'scripts/build.ts', '--if-stale'], { cwd: REPO_ROOT });
  });

  describe('node dist/server.js', () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'imagemedix-compiled-'));
    let child: ReturnType<typeof spawn> | null = null;
    let output = '';
    after(() => {
      child?.kill('SIGTERM');
      rmSync(dataDir, { recursive: true, force: true });
    });

    it('starts without tsx and answers /healthz and /readyz', async () => {
      const port = await freePort();
      child = spawn(process.execPath, ['dist/server.js'], {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH, PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir, JWT_SECRET: 'c'.repeat(32), LOG_LEVEL: 'info' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const base = `http://127.0.0.1:${port}`;
      const deadline = Date.now() + 60_000;
      for (;;) {
        assert.equal(child.exitCode, null, `the compiled server exited: ${output}`);
        const res = await fetch(`${base}/healthz`).catch(() => null);
        if (res?.ok) break;
        assert.ok(Date.now() < deadline, `no answer on /healthz within a minute: ${output}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      const ready = await fetch(`${base}/readyz`);
      assert.equal(ready.status, 200);
      assert.deepEqual(await ready.json(), { status: 'ready', database: 'pglite' });
    });
  });

  it('runs its decode and analysis threads from the compiled .js files', async () => {
    // A separate process with no tsx loader: a thread that pointed at a .ts file would fail.
    const script = `
      import { readFileSync } from 'node:fs';
      import { createImageDecoder } from './dist/imaging/decoder.js';
      import { createOnnxAnalyzer } from './dist/analysis/analyzer.js';
      const decoder = createImageDecoder({ timeoutMs: 30000, threads: 1 });
      const image = await decoder.decode(readFileSync(process.argv[1]), { maxPixels: 50e6 });
      const analyzer = createOnnxAnalyzer({ modelsDir: 'models', threads: 1 });
      const out = await analyzer.analyze('chest-xray', { png: image.png }, async () => {});
      console.log(JSON.stringify({ width: image.width, refused: out.refused, model: out.model?.id }));
      await decoder.close();
      await analyzer.close();
    `;
    const png = path.join(REPO_ROOT, 'test/fixtures/ml/chest-xray--normal.png');
    readFileSync(png); // the fixture is committed; fail here, clearly, if it is not
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script, png], { cwd: REPO_ROOT, timeout: 120_000 });
    const result = JSON.parse(stdout.trim().split('\n').pop()!) as { width: number; refused: boolean; model: string };
    assert.ok(result.width > 0);
    assert.equal(result.model, 'chest-xray');
  });
});
