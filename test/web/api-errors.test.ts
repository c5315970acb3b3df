// How the web app reads the API's refusals and its session token (web/src/lib/api-errors.ts),
// under node: the message a person sees, when a 401 ends the session, when the token expires,
// and the sign-in page's words for a locked or deactivated account.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ApiError,
  endsSession,
  errorFromResponse,
  humanWait,
  refusedDicomPatientId,
  refusedDicomPatientName,
  retryAfterSeconds,
  safeNext,
  signInErrorText,
  tokenExpiresAt,
} from '../../web/src/lib/api-errors.js';

const jwt = (payload: object) =>
  `eyJhbGciOiJIUzI1NiJ9.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.c2lnbmF0dXJl`;

describe('API errors in the web app', () => {
  test("the API's {error} message is what the person reads; without one, the status line", () => {
    const e = errorFromResponse(404, 'Not Found', { error: 'Scan not found' }, null);
    assert.ok(e instanceof ApiError);
    assert.equal(e.status, 404);
    assert.equal(e.message, 'Scan not found');
    assert.equal(errorFromResponse(502, 'Bad Gateway', '<html>proxy</html>', null).message, 'The server answered 502 Bad Gateway');
    assert.equal(errorFromResponse(500, '', { error: '' }, null).message, 'The server answered 500');
    assert.equal(errorFromResponse(400, '', null, null).message, 'The server answered 400');
  });

  test("an upload refused for its DICOM header's patient gives that header's PatientID from its field, never from the words", () => {
    const refused = errorFromResponse(409, 'Conflict', { error: 'The DICOM header\'s PatientID "4MR1" is not …', dicomPatientId: '4MR1' }, null);
    assert.equal(refusedDicomPatientId(refused), '4MR1');
    // Another 409 (a name that contradicts the record), another status, or no field: none.
    assert.equal(refusedDicomPatientId(errorFromResponse(409, 'Conflict', { error: 'PatientID "4MR1" …' }, null)), null);
    assert.equal(refusedDicomPatientId(errorFromResponse(400, '', { error: 'x', dicomPatientId: '4MR1' }, null)), null);
    assert.equal(refusedDicomPatientId(new Error('x')), null);
  });

  test("an upload refused for its DICOM header's PatientName gives that name from its field, never from the words", () => {
    const refused = errorFromResponse(409, 'Conflict', { error: 'The DICOM header\'s PatientName "RAJ SHARMA" shares no name …', dicomPatientName: 'RAJ SHARMA' }, null);
    assert.equal(refusedDicomPatientName(refused), 'RAJ SHARMA');
    assert.equal(refusedDicomPatientId(refused), null);
    assert.equal(refusedDicomPatientName(errorFromResponse(409, 'Conflict', { error: 'PatientName "RAJ SHARMA" …' }, null)), null);
    assert.equal(refusedDicomPatientName(errorFromResponse(400, '', { error: 'x', dicomPatientName: 'RAJ SHARMA' }, null)), null);
  });

  test('Retry-After is read in seconds; junk and zero are ignored', () => {
    assert.equal(errorFromResponse(429, 'Too Many Requests', { error: 'x' }, '900').retryAfter, 900);
    assert.equal(retryAfterSeconds(null), null);
    assert.equal(retryAfterSeconds('0'), null);
    assert.equal(retryAfterSeconds('soon'), null);
    assert.equal(retryAfterSeconds('Wed, 21 Oct 2015 07:28:00 GMT'), null);
  });

  test('a 401 ends the session anywhere but on the sign-in call (there it is a wrong password)', () => {
    assert.equal(endsSession(401, 'http://localhost:3000/api/scans/?page=1'), true);
    assert.equal(endsSession(401, '/api/scans/abc/pixels'), true);
    assert.equal(endsSession(401, 'http://localhost:3000/api/auth/login'), false);
    assert.equal(endsSession(401, 'http://localhost:3000/api/auth/login/'), false);
    assert.equal(endsSession(403, 'http://localhost:3000/api/users/users'), false, 'forbidden is not signed out');
    assert.equal(endsSession(200, '/api/auth/me'), false);
  });

  test("the token's expiry is read from its exp claim (base64url, unpadded); a malformed token has none", () => {
    assert.equal(tokenExpiresAt(jwt({ sub: 'u', exp: 1_900_000_000 })), 1_900_000_000_000);
    // A payload whose base64url needs padding and holds '-' / '_' characters.
    assert.equal(tokenExpiresAt(jwt({ sub: '>>>???', name: 'Ünïcode ~~', exp: 1_700_000_001 })), 1_700_000_001_000);
    assert.equal(tokenExpiresAt(jwt({ sub: 'u' })), null);
    assert.equal(tokenExpiresAt(jwt({ exp: 'tomorrow' })), null);
    assert.equal(tokenExpiresAt('not-a-token'), null);
    assert.equal(tokenExpiresAt('a.%%%.c'), null);
    assert.equal(tokenExpiresAt(null), null);
  });

  test('the sign-in page says a locked account is locked, for how long, and what else to do', () => {
    const locked = new ApiError(
      429,
      'Too many failed sign-ins: try again in 900 seconds, or ask an administrator to unlock the account',
      900,
    );
    assert.equal(
      signInErrorText(locked),
      'Too many failed sign-ins for this account: signing in to it is locked for 15 minutes. Try again then, or ask an administrator to unlock your account.',
    );
    // The server's words for an account lock today (src/auth/throttle.ts).
    const account = new ApiError(
      429,
      'Too many failed sign-ins for this account: try again in 40 seconds, or ask an administrator to unlock the account',
      40,
    );
    assert.match(signInErrorText(account), /^Too many failed sign-ins for this account: signing in to it is locked for 40 seconds\..*unlock your account\.$/);
    // The server's words for an address lock (src/auth/throttle.ts): not the account's unlock.
    const address = new ApiError(
      429,
      'Too many failed sign-ins from this network address: try again in 15 minutes, or ask an administrator to lift the lock on this address',
      900,
    );
    assert.equal(
      signInErrorText(address),
      'Too many failed sign-ins from this network address: signing in from here is locked for 15 minutes. Try again then, or ask an administrator to lift the lock on this address.',
    );
    // A lock the server does not say is the account's is not told as one: no unlock to ask for.
    const unnamed = new ApiError(429, 'Too many failed sign-ins: try again later', 120);
    assert.equal(signInErrorText(unnamed), 'Too many failed sign-ins: signing in is locked for 2 minutes. Try again then.');
    // The rate limit before signing in counts the network address (a ward's NAT), not a device.
    const limited = new ApiError(429, 'Too many requests: the limit is 20 per window; try again in 40 seconds', 40);
    assert.equal(signInErrorText(limited), 'Too many requests from this network address: try again in 40 seconds.');
    for (const refusal of [address, limited, unnamed]) assert.doesNotMatch(signInErrorText(refusal), /account/);
  });

  test('a deactivated account and a wrong password are told apart, each with what to do', () => {
    assert.match(
      signInErrorText(new ApiError(403, 'This account is deactivated: ask an administrator to activate it')),
      /deactivated\. Ask an administrator to activate it/,
    );
    assert.match(signInErrorText(new ApiError(401, 'Invalid email or password')), /Wrong email or password/);
    assert.equal(signInErrorText(new ApiError(0, 'The server could not be reached.')), 'The server could not be reached.');
  });

  test('waits read as a person says them', () => {
    assert.equal(humanWait(1), '1 second');
    assert.equal(humanWait(45), '45 seconds');
    assert.equal(humanWait(60), '1 minute');
    assert.equal(humanWait(61), '2 minutes');
    assert.equal(humanWait(900), '15 minutes');
    assert.equal(humanWait(3 * 3600), '3 hours');
  });

  test('after signing in, only a path of this app is a place to return to', () => {
    assert.equal(safeNext('/patients?search=Priya'), '/patients?search=Priya');
    assert.equal(safeNext(null), '/');
    assert.equal(safeNext('https://evil.example/'), '/');
    assert.equal(safeNext('//evil.example/'), '/');
    assert.equal(safeNext('/\\evil.example/'), '/');
  });
});
