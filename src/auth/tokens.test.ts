/**
 * The token service remembers tokens it has verified (the HMAC check was a measurable share of
 * every request): a remembered token must still die at its expiry, and a token that differs in
 * any byte is checked afresh.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { afterEach, mock, test } from 'node:test';
import { createTokenService } from './tokens.js';

afterEach(() => mock.timers.reset());

test('a token verified once is refused after its expiry, not served from memory', async () => {
  const tokens = createTokenService(randomBytes(32), '10s');
  const token = await tokens.issue({ id: 'user-1', tokenVersion: 3 });
  mock.timers.enable({ apis: ['Date'], now: Date.now() });
  assert.deepEqual(await tokens.verify(token), { userId: 'user-1', tokenVersion: 3 });
  assert.deepEqual(await tokens.verify(token), { userId: 'user-1', tokenVersion: 3 });
  mock.timers.tick(11_000);
  assert.equal(await tokens.verify(token), null);
  assert.equal(await tokens.verify(token), null);
});

test('a remembered token does not vouch for a forged one beside it', async () => {
  const tokens = createTokenService(randomBytes(32), '1h');
  const token = await tokens.issue({ id: 'user-1', tokenVersion: 0 });
  assert.ok(await tokens.verify(token));
  const [header, , signature] = token.split('.');
  const otherClaims = Buffer.from(JSON.stringify({ ver: 0, sub: 'admin-1', iss: 'imagemedix', aud: 'imagemedix-api', exp: 9_999_999_999 })).toString('base64url');
  assert.equal(await tokens.verify(`${header}.${otherClaims}.${signature}`), null);
  assert.equal(await tokens.verify(`${token}x`), null);
  const stranger = await createTokenService(randomBytes(32), '1h').issue({ id: 'user-1', tokenVersion: 0 });
  assert.equal(await tokens.verify(stranger), null);
});
