// Google sign-in settings. The process environment is read once by the platform config;
// `googleConfigFromEnv` only turns the GOOGLE_* values it is handed into a checked
// `GoogleConfig`, so the rules for these settings live with the feature.

export type GoogleAutoProvision = 'inactive' | 'active' | 'off';

export interface GoogleConfig {
  /** Absent: Google sign-in is switched off and both routes answer 404. */
  clientId?: string;
  clientSecret?: string;
  /** The registered redirect URI, e.g. https://imagemedix.example/api/auth/google/callback */
  callbackUrl?: string;
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

export function googleConfigFromEnv(
  env: Readonly<Record<string, string | undefined>>,
  clientUrl: string,
): GoogleConfig {
  const autoProvision = (nonEmpty(env['GOOGLE_AUTO_PROVISION'])?.toLowerCase() ?? 'inactive') as GoogleAutoProvision;
  if (!AUTO_PROVISION_VALUES.includes(autoProvision)) {
    throw new Error(`GOOGLE_AUTO_PROVISION must be one of ${AUTO_PROVISION_VALUES.join(', ')}`);
  }
  const config: GoogleConfig = {
    clientId: nonEmpty(env['GOOGLE_CLIENT_ID']),
    clientSecret: nonEmpty(env['GOOGLE_CLIENT_SECRET']),
    callbackUrl: nonEmpty(env['GOOGLE_CALLBACK_URL']),
    clientUrl,
    issuer: nonEmpty(env['GOOGLE_ISSUER']) ?? DEFAULT_GOOGLE_ISSUER,
    autoProvision,
    allowedDomains: parseAllowedDomains(env['GOOGLE_ALLOWED_DOMAINS'] ?? ''),
  };
  checkGoogleConfig(config);
  return config;
}

/** "example.org, @Example.com" -> ["example.org", "example.com"] */
export function parseAllowedDomains(value: string): string[] {
  const domains = value
    .split(/[\s,]+/)
    .map((domain) => domain.trim().toLowerCase().replace(/^@/, ''))
    .filter((domain) => domain !== '');
  for (const domain of domains) {
    if (!DOMAIN_PATTERN.test(domain)) throw new Error(`GOOGLE_ALLOWED_DOMAINS: "${domain}" is not a domain name`);
  }
  return [...new Set(domains)];
}

/** Throws with a message naming the setting at fault; returns whether sign-in is enabled. */
export function checkGoogleConfig(config: GoogleConfig): config is EnabledGoogleConfig {
  if (!AUTO_PROVISION_VALUES.includes(config.autoProvision)) {
    throw new Error(`GOOGLE_AUTO_PROVISION must be one of ${AUTO_PROVISION_VALUES.join(', ')}`);
  }
  const insecure = config.allowInsecureIssuer === true;
  requireUrl('CLIENT_URL', config.clientUrl, true);
  if (config.clientId === undefined) return false;
  if (config.clientSecret === undefined) throw new Error('GOOGLE_CLIENT_SECRET is required when GOOGLE_CLIENT_ID is set');
  if (config.callbackUrl === undefined) throw new Error('GOOGLE_CALLBACK_URL is required when GOOGLE_CLIENT_ID is set');
  requireUrl('GOOGLE_CALLBACK_URL', config.callbackUrl, true);
  requireUrl('GOOGLE_ISSUER', config.issuer, insecure);
  return true;
}

function requireUrl(name: string, value: string, allowHttp: boolean): void {
  const protocols = allowHttp ? ['https:', 'http:'] : ['https:'];
  if (!URL.canParse(value) || !protocols.includes(new URL(value).protocol)) {
    throw new Error(`${name} must be an absolute ${allowHttp ? 'http(s)' : 'https'} URL`);
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed === undefined || trimmed === '' ? undefined : trimmed;
}
