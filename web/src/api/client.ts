/**
 * The typed API client. Paths, parameters and bodies come from openapi.d.ts, which the build
 * generates from the server's own OpenAPI document: nothing here restates the API's shapes.
 *
 * The session token is the only thing the app keeps in browser storage (sessionStorage: it
 * survives a reload, not the closing of the tab). Patient data lives in memory only.
 */
import createClient, { type Middleware } from 'openapi-fetch';
import type { components, paths } from './openapi';

export type { components, paths };

type Json<T> = T extends { content: { 'application/json': infer B } } ? B : never;
/** The JSON body of a successful answer of `method path`. */
export type Ok<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  responses: infer R;
}
  ? Json<R[Extract<keyof R, 200 | 201>]>
  : never;

export type ScanDetail = Ok<'/api/scans/{id}', 'get'>;
export type ScanList = Ok<'/api/scans/', 'get'>;
export type ScanListItem = ScanList['scans'][number];
export type ScanResult = NonNullable<ScanDetail['result']>;
export type ScanStatus = Ok<'/api/scans/{id}/status', 'get'>;
export type ScanType = NonNullable<ScanDetail['scanType']>;
export type UploadedScan = Ok<'/api/scans/', 'post'>;
export type Me = Ok<'/api/auth/me', 'get'>;
export type PatientList = Ok<'/api/patients/', 'get'>;
export type PatientDetail = Ok<'/api/patients/{id}', 'get'>;
export type User = Ok<'/api/users/users', 'get'>[number];
export type Webhook = Ok<'/api/webhooks/', 'get'>['webhooks'][number];
export type Delivery = Ok<'/api/webhooks/{id}/deliveries', 'get'>['deliveries'][number];
export type ModelInfo = Ok<'/api/ml/models', 'get'>['models'][number];
export type ScanListQuery = NonNullable<paths['/api/scans/']['get']['parameters']['query']>;

const TOKEN_KEY = 'imagemedix.session';

export const session = {
  get token(): string | null {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set(token: string) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
  /** When the token stops working (its `exp`), in ms since the epoch; null if unreadable. */
  expiresAt(): number | null {
    const token = this.token;
    const payload = token?.split('.')[1];
    if (!payload) return null;
    try {
      const json = JSON.parse(atob(payload.replace(/-/g, '+').replace(/_/g, '/'))) as { exp?: unknown };
      return typeof json.exp === 'number' ? json.exp * 1000 : null;
    } catch {
      return null;
    }
  },
};

/** Called when the server says the session is over (401), so the app can return to sign-in. */
let onUnauthorized: (() => void) | null = null;
export function setUnauthorizedHandler(handler: (() => void) | null) {
  onUnauthorized = handler;
}

const auth: Middleware = {
  onRequest({ request }) {
    const token = session.token;
    if (token) request.headers.set('authorization', `Bearer ${token}`);
    return request;
  },
  onResponse({ response, request }) {
    if (response.status === 401 && !request.url.endsWith('/api/auth/login')) onUnauthorized?.();
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: window.location.origin });
api.use(auth);

/** An answer the API refused, with its `{"error"}` message for the person using the app. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly retryAfter: number | null = null,
  ) {
    super(message);
  }
}

interface FetchResult<T> {
  data?: T;
  error?: unknown;
  response: Response;
}

/** Unwraps an openapi-fetch result: the data, or an ApiError with the server's message. */
export async function ok<T>(call: Promise<FetchResult<T>>): Promise<T> {
  let out: FetchResult<T>;
  try {
    out = await call;
  } catch {
    throw new ApiError(0, 'The server could not be reached. Check the connection and try again.');
  }
  const { data, error, response } = out;
  if (response.ok) return data as T;
  const message =
    error && typeof error === 'object' && 'error' in error && typeof error.error === 'string'
      ? error.error
      : `The server answered ${response.status} ${response.statusText}`;
  const retry = Number(response.headers.get('retry-after'));
  throw new ApiError(response.status, message, Number.isFinite(retry) && retry > 0 ? retry : null);
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return 'Something went wrong';
}

/** Uploads a scan with progress events (fetch cannot report upload progress; XHR can). */
export function uploadScan(
  form: FormData,
  onProgress: (fraction: number) => void,
  signal?: AbortSignal,
): Promise<UploadedScan> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/scans');
    const token = session.token;
    if (token) xhr.setRequestHeader('authorization', `Bearer ${token}`);
    xhr.responseType = 'json';
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      if (xhr.status === 201) return resolve(xhr.response as UploadedScan);
      if (xhr.status === 401) onUnauthorized?.();
      const body = xhr.response as { error?: unknown } | null;
      reject(new ApiError(xhr.status, typeof body?.error === 'string' ? body.error : `Upload failed (${xhr.status})`));
    };
    xhr.onerror = () => reject(new ApiError(0, 'The upload was interrupted: the server could not be reached.'));
    xhr.onabort = () => reject(new ApiError(0, 'Upload cancelled'));
    signal?.addEventListener('abort', () => xhr.abort());
    xhr.send(form);
  });
}

export interface DicomPixels {
  width: number;
  height: number;
  data: Int16Array | Float32Array;
  window: { center: number; width: number };
  min: number;
  max: number;
  invert: boolean;
}

/** A DICOM scan's original pixel values (GET /api/scans/{id}/pixels) for window/level. */
export async function fetchPixels(scanId: string, signal?: AbortSignal): Promise<DicomPixels> {
  const res = await fetch(`/api/scans/${encodeURIComponent(scanId)}/pixels`, {
    headers: { authorization: `Bearer ${session.token ?? ''}` },
    signal,
  });
  if (!res.ok) {
    if (res.status === 401) onUnauthorized?.();
    const body = (await res.json().catch(() => null)) as { error?: string } | null;
    throw new ApiError(res.status, body?.error ?? `Pixel data unavailable (${res.status})`);
  }
  const h = (name: string) => Number(res.headers.get(name));
  const buffer = await res.arrayBuffer();
  const format = res.headers.get('x-pixel-format');
  return {
    width: h('x-image-width'),
    height: h('x-image-height'),
    data: format === 'int16' ? new Int16Array(buffer) : new Float32Array(buffer),
    window: { center: h('x-window-center'), width: h('x-window-width') },
    min: h('x-pixel-min'),
    max: h('x-pixel-max'),
    invert: res.headers.get('x-photometric-invert') === 'true',
  };
}
