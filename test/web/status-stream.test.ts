// The live status stream of the web app (web/src/lib/status-stream.ts), under node with a fake
// fetch: a refused token ends the session at once (as an API call's 401 does) instead of being
// retried; other failures are retried with a growing wait; `end` stops following.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { followScanStatus } from '../../web/src/lib/status-stream.js';

interface Call {
  url: string;
  authorization: string | null;
}

/** A fetch that answers each call with the next of `answers` and records what it was asked. */
function fakeFetch(answers: (() => Response)[]) {
  const calls: Call[] = [];
  const fetch: typeof globalThis.fetch = (input, init) => {
    const url = input instanceof Request ? input.url : input.toString();
    calls.push({ url, authorization: new Headers(init?.headers).get('authorization') });
    const next = answers.shift();
    if (!next) throw new Error('more connections than the test expected');
    return Promise.resolve(next());
  };
  return { fetch, calls };
}

const sse = (text: string) => () => new Response(text, { status: 200, headers: { 'content-type': 'text/event-stream' } });
const refused = (status: number) => () => new Response(JSON.stringify({ error: 'no' }), { status });

function follow(fetch: typeof globalThis.fetch) {
  const events: unknown[] = [];
  const waits: number[] = [];
  let sessionEnds = 0;
  const done = followScanStatus({
    ids: ['scan-1', 'scan/2'],
    token: () => 'tok-1',
    onEvent: (e) => events.push(e),
    onSessionEnd: () => sessionEnds++,
    signal: new AbortController().signal,
    fetch,
    wait: (ms) => {
      waits.push(ms);
      return Promise.resolve();
    },
  });
  return { done, events, waits, sessionEnds: () => sessionEnds };
}

describe('live scan status stream', () => {
  test('a 401 (token expired or revoked) ends the session once and is not retried', async () => {
    const { fetch, calls } = fakeFetch([refused(401), refused(401), refused(401), refused(401), refused(401)]);
    const run = follow(fetch);
    assert.equal(await run.done, 'session-ended');
    assert.equal(run.sessionEnds(), 1, 'the app goes back to sign-in');
    assert.equal(calls.length, 1, 'no reconnection with a refused token');
    assert.deepEqual(run.waits, []);
  });

  test('other failures are retried with a growing wait, then given up, without ending the session', async () => {
    const { fetch, calls } = fakeFetch([refused(503), refused(502), refused(500), refused(503), refused(503)]);
    const run = follow(fetch);
    assert.equal(await run.done, 'gave-up');
    assert.equal(calls.length, 5);
    assert.deepEqual(run.waits, [2000, 4000, 6000, 8000, 10000]);
    assert.equal(run.sessionEnds(), 0);
  });

  test('status events reach the page; a closed stream reconnects; `end` stops following', async () => {
    const { fetch, calls } = fakeFetch([
      sse('event: status\ndata: {"_id":"scan-1","status":"processing","progress":40}\n\n'),
      sse('event: status\ndata: {"_id":"scan-1","status":"completed"}\n\nevent: end\ndata: {}\n\n'),
    ]);
    const run = follow(fetch);
    assert.equal(await run.done, 'end');
    assert.deepEqual(run.events, [
      { _id: 'scan-1', status: 'processing', progress: 40 },
      { _id: 'scan-1', status: 'completed' },
    ]);
    assert.equal(calls.length, 2);
    assert.equal(calls[0]?.url, '/api/scans/events?ids=scan-1,scan%2F2');
    assert.equal(calls[0]?.authorization, 'Bearer tok-1', 'the token travels in a header, not the URL');
    assert.equal(run.sessionEnds(), 0);
  });
});
