// Who a verified Google identity is in ImageMedix: the user already linked to the Google
// subject, an existing user with the same verified email (linked now), or a new doctor,
// within the domain and provisioning rules.
import type { GoogleAutoProvision } from './config.js';
import { isUniqueViolation } from '../../platform/db/errors.js';
import { GoogleSignInError } from './errors.js';

export interface GoogleUser {
  id: string;
  email: string;
  name: string;
  role: 'doctor' | 'admin';
  isActive: boolean;
  /**
   * The Google subject already linked to this user, when the store knows it. Lets linking by
   * email refuse a user who is linked to another Google account (a recycled address).
   */
  googleSubject?: string | null;
}

export interface GoogleUserStore {
  findByGoogleSubject(sub: string): Promise<GoogleUser | null>;
  findByEmail(emailLowercase: string): Promise<GoogleUser | null>;
  /** Should refuse (throw) if the user is already linked to a different subject. */
  linkGoogleSubject(userId: string, sub: string): Promise<void>;
  /** Creates a doctor. */
  createFromGoogle(input: { email: string; name: string; sub: string; isActive: boolean }): Promise<GoogleUser>;
}

/** The claims of a validated Google ID token that sign-in relies on. */
export interface GoogleIdentity {
  sub: string;
  email: string | undefined;
  emailVerified: boolean;
  name: string | undefined;
  /** Google Workspace hosted domain (`hd` claim). */
  hostedDomain: string | undefined;
}

export type GoogleSignInOutcome = 'returning' | 'linked' | 'created';

export async function signInWithGoogle(opts: {
  identity: GoogleIdentity;
  users: GoogleUserStore;
  autoProvision: GoogleAutoProvision;
  allowedDomains: readonly string[];
}): Promise<{ user: GoogleUser; outcome: GoogleSignInOutcome }> {
  const { identity, users } = opts;
  // The email decides the domain and may link an account, so it must be one Google vouches for.
  if (identity.email === undefined || !identity.emailVerified) {
    throw new GoogleSignInError('email_not_verified', 'email missing or email_verified is not true');
  }
  const email = identity.email.toLowerCase();
  if (!isDomainAllowed(email, identity.hostedDomain, opts.allowedDomains)) {
    throw new GoogleSignInError('domain_not_allowed', 'email domain or hd claim not in GOOGLE_ALLOWED_DOMAINS');
  }

  const linked = await users.findByGoogleSubject(identity.sub);
  if (linked) return { user: requireActive(linked), outcome: 'returning' };

  const sameEmail = await users.findByEmail(email);
  if (sameEmail) {
    if (sameEmail.googleSubject != null && sameEmail.googleSubject !== identity.sub) {
      throw new GoogleSignInError('account_conflict', 'user is linked to another Google subject', sameEmail.id);
    }
    requireActive(sameEmail);
    await users.linkGoogleSubject(sameEmail.id, identity.sub);
    return { user: sameEmail, outcome: 'linked' };
  }

  switch (opts.autoProvision) {
    case 'off':
      throw new GoogleSignInError('account_not_found', 'GOOGLE_AUTO_PROVISION is off');
    case 'inactive': {
      const created = await createOnce(users, { email, name: displayName(identity, email), sub: identity.sub, isActive: false });
      throw new GoogleSignInError('account_pending_activation', 'created inactive doctor', created.id);
    }
    case 'active': {
      const created = await createOnce(users, { email, name: displayName(identity, email), sub: identity.sub, isActive: true });
      return { user: created, outcome: 'created' };
    }
  }
}

function isDomainAllowed(email: string, hostedDomain: string | undefined, allowedDomains: readonly string[]): boolean {
  if (allowedDomains.length === 0) return true;
  const emailDomain = email.slice(email.lastIndexOf('@') + 1).toLowerCase();
  if (!allowedDomains.includes(emailDomain)) return false;
  return hostedDomain === undefined || allowedDomains.includes(hostedDomain.toLowerCase());
}

/**
 * Two tabs finishing the same first sign-in race to create the account; the one that loses
 * the insert takes the account the other created, so both hear the same answer.
 */
async function createOnce(users: GoogleUserStore, input: Parameters<GoogleUserStore['createFromGoogle']>[0]): Promise<GoogleUser> {
  try {
    return await users.createFromGoogle(input);
  } catch (err) {
    if (!isUniqueViolation(err)) throw err;
    const created = await users.findByGoogleSubject(input.sub);
    if (!created) throw err;
    return created;
  }
}

function requireActive(user: GoogleUser): GoogleUser {
  if (!user.isActive) throw new GoogleSignInError('account_inactive', 'user is not active', user.id);
  return user;
}

function displayName(identity: GoogleIdentity, email: string): string {
  const name = identity.name?.trim();
  return name === undefined || name === '' ? email.slice(0, email.lastIndexOf('@')) : name;
}
