// Google sign-in settings, as parsed from the environment by the platform config
// (GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET, GOOGLE_CALLBACK_URL, CLIENT_URL, GOOGLE_ISSUER,
// GOOGLE_AUTO_PROVISION, GOOGLE_ALLOWED_DOMAINS). `checkGoogleConfig` holds the rules that
// are particular to this feature and runs when the plugin is built, so start-up fails on a
// setting that would only break the first sign-in.

export type GoogleAutoProvision = 'inactive' | 'active' | 'off';

export interface GoogleConfig {
  /** Absent: Google sign-in is switched off and both routes answer 404. */
  clientId?: string | null;
  clientSecret?: string | null;
  /** The registered redirect URI, e.g. https://imagemedix.example/api/auth/google/callback */
  callbackUrl?: string | null;
  /** Where the browser is sent back to, with `#token=` or `#error=` in the fragment. */
  clientUrl: string;
  issuer: string;
  /**
   * What happens to a Google user with no ImageMedix account: `inactive` creates an inactive
   * doctor an administrator must activate, `active` creates an active doctor, `off` refuses.
   */
  autoProvision: GoogleAutoProvision;
  /** Lower-case email domains allowed to sign in; empty allows any. */
  allowedDomains: string[];
  /** Allows an http:// issuer. Only for tests against a provider on loopback. */
  allowInsecureIssuer?: boolean;
}

/** Google sign-in settings once a client id is set: everything the flow needs is present. */
export interface EnabledGoogleConfig extends GoogleConfig {
  clientId: string;
  clientSecret: string;
  callbackUrl: string;
}

export const DEFAULT_GOOGLE_ISSUER = 'https://accounts.google.com';

const AUTO_PROVISION_VALUES: readonly GoogleAutoProvision[] = ['inactive', 'active', 'off'];
const DOMAIN_PATTERN = /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;

/** Throws with a message naming the setting at fault; returns whether sign-in is enabled. */
export function checkGoogleConfig(config: GoogleConfig): config is EnabledGoogleConfig {
  if (config.clientId == null) return false;
  if (config.clientSecret == null) throw new Error('GOOGLE_CLIENT_SECRET is required when GOOGLE_CLIENT_ID is set');
  if (config.callbackUrl == null) throw new Error('GOOGLE_CALLBACK_URL is required when GOOGLE_CLIENT_ID is set');
  requireUrl('GOOGLE_CALLBACK_URL', config.callbackUrl, true);
  requireUrl('CLIENT_URL', config.clientUrl, true);
  requireUrl('GOOGLE_ISSUER', config.issuer, config.allowInsecureIssuer === true);
  if (!AUTO_PROVISION_VALUES.includes(config.autoProvision)) {
    throw new Error(`GOOGLE_AUTO_PROVISION must be one of ${AUTO_PROVISION_VALUES.join(', ')}`);
  }
  // A typo here would silently refuse everyone, so it is an error instead.
  for (const domain of config.allowedDomains) {
    if (!DOMAIN_PATTERN.test(domain)) {
      throw new Error(`GOOGLE_ALLOWED_DOMAINS: "${domain}" is not a lower-case domain name (like hospital.example)`);
    }
  }
  return true;
}

function requireUrl(name: string, value: string, allowHttp: boolean): void {
  const protocols = allowHttp ? ['https:', 'http:'] : ['https:'];
  if (!URL.canParse(value) || !protocols.includes(new URL(value).protocol)) {
    throw new Error(`${name} must be an absolute ${allowHttp ? 'http(s)' : 'https'} URL`);
  }
}
