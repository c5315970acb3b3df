/**
 * turnPrepared (routing's quarter turns of a preprocessed image) on planes as preprocessImage makes
 * them, some of them Buffers. In a file of its own: node warns of the deprecated `new Buffer(n)`
 * (DEP0005) once per process, so only a fresh process can see whether this path calls it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';

import sharp from 'sharp';

import { parsePreprocessingSpec, preprocessImage } from './preprocess.js';
import { turnPrepared } from './routing.js';
import { fixture } from './testing.js';

it('turns every plane without the deprecated Buffer constructor, keeping each plane\'s kind, and four turns give the image back', async () => {
  const spec = parsePreprocessingSpec(JSON.parse(readFileSync(new URL('../../ml/preprocessing.json', import.meta.url), 'utf8')));
  // A JPEG is decoded into a Buffer (a PNG into a plain Uint8Array): the case that warned.
  const prepared = await preprocessImage(await sharp(await fixture('chest-xray', 'normal')).jpeg().toBuffer(), spec);
  assert.ok(Buffer.isBuffer(prepared.rgb), 'the JPEG path gives a Buffer, or this test checks nothing');
  const warnings: string[] = [];
  const onWarning = (warning: Error & { code?: string }) => warnings.push(warning.code ?? warning.name);
  process.on('warning', onWarning);
  try {
    let turned = turnPrepared(prepared, true);
    for (const plane of ['tensor', 'rgb', 'gray', 'channelSums'] as const) {
      assert.equal(turned[plane].constructor, prepared[plane].constructor, `${plane} keeps its kind`);
    }
    for (let i = 0; i < 3; i++) turned = turnPrepared(turned, true);
    // Warnings are emitted on a later tick.
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(warnings, []);
    for (const plane of ['tensor', 'rgb', 'gray', 'channelSums'] as const) assert.deepEqual(turned[plane], prepared[plane], plane);
    assert.deepEqual(turned.source.gray, prepared.source.gray, 'source gray');
  } finally {
    process.off('warning', onWarning);
  }
});
