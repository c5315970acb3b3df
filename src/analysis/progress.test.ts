/** Progress writes of one analysis: what a status poller can see, and how many statements it costs. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { throttledProgress } from './progress.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function recorder() {
  const written: string[] = [];
  return { written, write: async (stage: string) => void written.push(stage) };
}

test('stages that pass within the interval cost no write; the analysis ends with none pending', async () => {
  const { written, write } = recorder();
  const progress = throttledProgress(write, 200);
  progress.report('preprocess');
  progress.report('inference');
  progress.report('explanation');
  await progress.settle();
  await sleep(250);
  assert.deepEqual(written, []);
});

test('a stage that lasts past the interval is written once it ends, the newest one only', async () => {
  const { written, write } = recorder();
  const progress = throttledProgress(write, 60);
  progress.report('preprocess');
  progress.report('inference');
  // Waits for the write rather than a fixed time: on a loaded machine the timer fires late.
  for (let waited = 0; written.length === 0 && waited < 5_000; waited += 10) await sleep(10);
  assert.deepEqual(written, ['inference']);
  // After a quiet interval (counted from the write just seen), the next stage is written at once.
  await sleep(80);
  progress.report('explanation');
  await sleep(0);
  assert.deepEqual(written, ['inference', 'explanation']);
  await progress.settle();
});

test('settle waits for the write in flight, so the final write comes after it', async () => {
  const order: string[] = [];
  const progress = throttledProgress(async (stage: string) => {
    await sleep(50);
    order.push(stage);
  }, 0);
  progress.report('saving');
  await progress.settle();
  order.push('final');
  assert.deepEqual(order, ['saving', 'final']);
});

test('a failing write does not fail the analysis nor stop later writes', async () => {
  const written: string[] = [];
  const progress = throttledProgress(async (stage: string) => {
    if (stage === 'preprocess') throw new Error('connection lost');
    written.push(stage);
  }, 0);
  progress.report('preprocess');
  progress.report('inference');
  await progress.settle();
  assert.deepEqual(written, ['inference']);
});
