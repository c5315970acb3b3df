import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { checkGoogleConfig, DEFAULT_GOOGLE_ISSUER, type GoogleConfig } from './config.js';

const ENABLED: GoogleConfig = {
  clientId: 'id.apps.googleusercontent.com',
  clientSecret: 'secret',
  callbackUrl: 'https://imagemedix.example/api/auth/google/callback',
  clientUrl: 'https://imagemedix.example/',
  issuer: DEFAULT_GOOGLE_ISSUER,
  autoProvision: 'inactive',
  allowedDomains: ['hospital.example'],
};

describe('checkGoogleConfig', () => {
  test('without a client id, sign-in is off and nothing else is checked', () => {
    assert.equal(checkGoogleConfig({ ...ENABLED, clientId: null, clientSecret: null, callbackUrl: null, clientUrl: '' }), false);
    assert.equal(checkGoogleConfig({ ...ENABLED, clientId: undefined }), false);
  });

  test('a complete configuration enables sign-in', () => {
    assert.equal(checkGoogleConfig(ENABLED), true);
  });

  test('a client id needs a secret and an absolute callback URL', () => {
    assert.throws(() => checkGoogleConfig({ ...ENABLED, clientSecret: null }), /GOOGLE_CLIENT_SECRET/);
    assert.throws(() => checkGoogleConfig({ ...ENABLED, callbackUrl: undefined }), /GOOGLE_CALLBACK_URL/);
    assert.throws(() => checkGoogleConfig({ ...ENABLED, callbackUrl: '/api/auth/google/callback' }), /GOOGLE_CALLBACK_URL/);
    assert.throws(() => checkGoogleConfig({ ...ENABLED, clientUrl: 'web' }), /CLIENT_URL/);
  });

  test('the issuer must be https unless explicitly allowed (loopback tests)', () => {
    assert.throws(() => checkGoogleConfig({ ...ENABLED, issuer: 'http://127.0.0.1:4000' }), /GOOGLE_ISSUER/);
    assert.equal(checkGoogleConfig({ ...ENABLED, issuer: 'http://127.0.0.1:4000', allowInsecureIssuer: true }), true);
  });

  test('malformed allowed domains fail at start-up instead of refusing everyone', () => {
    for (const domain of ['@hospital.example', 'Hospital.Example', '*.hospital.example', 'hospital']) {
      assert.throws(() => checkGoogleConfig({ ...ENABLED, allowedDomains: [domain] }), /GOOGLE_ALLOWED_DOMAINS/, domain);
    }
  });
});
