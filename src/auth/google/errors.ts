// Why a Google sign-in ended without an ImageMedix token. The code and description travel
// to the web client in the redirect fragment, so descriptions are fixed texts written for
// the user, never provider or library messages.
export type GoogleSignInErrorCode =
  | 'access_denied'
  | 'invalid_request'
  | 'invalid_state'
  | 'invalid_grant'
  | 'invalid_response'
  | 'email_not_verified'
  | 'domain_not_allowed'
  | 'account_not_found'
  | 'account_pending_activation'
  | 'account_inactive'
  | 'account_conflict'
  | 'provider_error'
  | 'provider_unavailable'
  | 'server_error';

export const GOOGLE_SIGN_IN_ERROR_DESCRIPTIONS: Record<GoogleSignInErrorCode, string> = {
  access_denied: 'Google sign-in was cancelled.',
  invalid_request: 'The sign-in response was malformed. Please try again.',
  invalid_state: 'The sign-in session expired or does not match this browser. Please try again.',
  invalid_grant: 'The sign-in code was rejected (already used or expired). Please try again.',
  invalid_response: 'The response from Google could not be verified.',
  email_not_verified: 'Your Google account has no verified email address.',
  domain_not_allowed: "Your Google account's domain is not allowed to sign in to this server.",
  account_not_found: 'There is no ImageMedix account for this Google account. Ask an administrator to create one.',
  account_pending_activation: 'Your ImageMedix account was created and must be activated by an administrator before you can sign in.',
  account_inactive: 'Your ImageMedix account is not active. Ask an administrator to activate it.',
  account_conflict: 'Your ImageMedix account is already linked to a different Google account.',
  provider_error: 'Google sign-in failed.',
  provider_unavailable: 'Google sign-in is temporarily unavailable. Please try again later.',
  server_error: 'Sign-in failed because of a server error.',
};

export class GoogleSignInError extends Error {
  constructor(
    readonly code: GoogleSignInErrorCode,
    /** For the log only: a fixed library or rule message, never a token, code or email. */
    readonly detail?: string,
    /** For the log only: the ImageMedix user concerned, when there is one. */
    readonly userId?: string,
  ) {
    super(GOOGLE_SIGN_IN_ERROR_DESCRIPTIONS[code]);
    this.name = 'GoogleSignInError';
  }
}
