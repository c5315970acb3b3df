/**
 * How the app reads the API's refusals and the session token: the `{"error"}` message for the
 * person using the app, when a 401 ends the session, when the token expires, and the sign-in
 * page's words for a locked or deactivated account. Pure (no DOM), so it is tested under node.
 */

/** An answer the API refused, with its `{"error"}` message for the person using the app. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    /** Seconds to wait, from Retry-After (429, 503); null when not given. */
    readonly retryAfter: number | null = null,
    /** The refusal's machine-readable fields beside `error` (an upload's 409: `dicomPatientId`, `dicomPatientName`). */
    readonly fields: Readonly<Record<string, unknown>> = {},
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const UNREACHABLE = 'The server could not be reached. Check the connection and try again.';

/** The message of a refused answer: the API's `{"error"}`, else the status line. */
export function errorFromResponse(status: number, statusText: string, body: unknown, retryAfterHeader: string | null): ApiError {
  const message =
    body && typeof body === 'object' && 'error' in body && typeof body.error === 'string' && body.error.trim()
      ? body.error
      : `The server answered ${status}${statusText ? ` ${statusText}` : ''}`;
  const fields = body && typeof body === 'object' ? (body as Record<string, unknown>) : {};
  return new ApiError(status, message, retryAfterSeconds(retryAfterHeader), fields);
}

/**
 * The DICOM header's PatientID of an upload refused because it is not the chosen patient's
 * (409 with `dicomPatientId`): what confirming sends back. Read from the field, never from the
 * message's words; null for any other refusal.
 */
export function refusedDicomPatientId(err: unknown): string | null {
  return refusedField(err, 'dicomPatientId');
}

/**
 * The DICOM header's PatientName of an upload refused because it shares no name with the chosen
 * patient's (409 with `dicomPatientName`): what confirming sends back; null for any other refusal.
 */
export function refusedDicomPatientName(err: unknown): string | null {
  return refusedField(err, 'dicomPatientName');
}

function refusedField(err: unknown, field: string): string | null {
  if (!(err instanceof ApiError) || err.status !== 409) return null;
  const value = err.fields[field];
  return typeof value === 'string' && value ? value : null;
}

/** Retry-After in seconds (delta form; an HTTP date is not used by this API); null if absent. */
export function retryAfterSeconds(header: string | null): number | null {
  if (header === null || !/^\s*\d+\s*$/.test(header)) return null;
  const n = Number(header);
  return n > 0 ? n : null;
}

/**
 * A 401 means the session is over (expired, revoked, user deactivated), except on the sign-in
 * call itself, where it means a wrong password and the person stays on the page.
 */
export function endsSession(status: number, url: string): boolean {
  if (status !== 401) return false;
  let path: string;
  try {
    path = new URL(url, 'http://app.invalid').pathname;
  } catch {
    return true;
  }
  return path.replace(/\/+$/, '') !== '/api/auth/login';
}

/** When a JWT stops working (its `exp`), in ms since the epoch; null if it has none or is unreadable. */
export function tokenExpiresAt(token: string | null): number | null {
  const payload = token?.split('.')[1];
  if (!payload) return null;
  try {
    const base64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const json = JSON.parse(atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4))) as { exp?: unknown };
    return typeof json.exp === 'number' && Number.isFinite(json.exp) ? json.exp * 1000 : null;
  } catch {
    return null;
  }
}

/** "45 seconds", "1 minute", "15 minutes", "2 hours": a wait as a person says it. */
export function humanWait(seconds: number): string {
  const s = Math.max(1, Math.ceil(seconds));
  if (s < 60) return `${s} second${s === 1 ? '' : 's'}`;
  const m = Math.ceil(s / 60);
  if (m < 120) return `${m} minute${m === 1 ? '' : 's'}`;
  const h = Math.ceil(m / 60);
  return `${h} hours`;
}

/**
 * What the sign-in page says when signing in failed, in words a person can act on. The API's
 * messages are kept where they already say what to do; a lock or a rate limit says how long.
 */
export function signInErrorText(err: unknown): string {
  if (!(err instanceof ApiError)) return err instanceof Error ? err.message : 'Signing in failed. Try again.';
  if (err.status === 429) {
    const wait = err.retryAfter ? humanWait(err.retryAfter) : 'a few minutes';
    // The server locks an address (a ward behind one network address) apart from an account,
    // and an administrator lifts each by a different action: say which one to ask for, and name
    // the account's only when the server says the account is locked.
    if (/failed sign-ins/i.test(err.message)) {
      if (/address/i.test(err.message)) {
        return `Too many failed sign-ins from this network address: signing in from here is locked for ${wait}. Try again then, or ask an administrator to lift the lock on this address.`;
      }
      if (/account/i.test(err.message)) {
        return `Too many failed sign-ins for this account: signing in to it is locked for ${wait}. Try again then, or ask an administrator to unlock your account.`;
      }
      return `Too many failed sign-ins: signing in is locked for ${wait}. Try again then.`;
    }
    // Requests before signing in are counted by network address, which the devices of a ward
    // behind one NAT share: "this device" would send a person to look for a fault on theirs.
    return `Too many requests from this network address: try again in ${wait}.`;
  }
  if (err.status === 403 && /deactivated/i.test(err.message)) {
    return 'This account is deactivated. Ask an administrator to activate it, then sign in again.';
  }
  if (err.status === 401) return 'Wrong email or password. Check both and try again.';
  return err.message;
}

/** Only a path of this app is a place to return to after signing in (never another site). */
export function safeNext(next: string | null): string {
  return next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\') ? next : '/';
}
