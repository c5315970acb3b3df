/**
 * The typed API client. Paths, parameters and bodies come from openapi.d.ts, which the build
 * generates from the server's own OpenAPI document: nothing here restates the API's shapes.
 *
 * The session token is the only thing the app keeps in browser storage (sessionStorage: it
 * survives a reload, not the closing of the tab). Patient data lives in memory only.
 */
import createClient, { type Middleware } from 'openapi-fetch';
import { ApiError, endsSession, errorFromResponse, tokenExpiresAt, UNREACHABLE } from '../lib/api-errors';
import type { paths } from './openapi';

export type { paths };

type Json<T> = T extends { content: { 'application/json': infer B } } ? B : never;
/** The JSON body of a successful answer of `method path`. */
type Ok<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  responses: infer R;
}
  ? Json<R[Extract<keyof R, 200 | 201>]>
  : never;

export type ScanDetail = Ok<'/api/scans/{id}', 'get'>;
type ScanList = Ok<'/api/scans/', 'get'>;
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
    return tokenExpiresAt(this.token);
  },
};

/** Called when the server says the session is over (401), so the app can return to sign-in. */
let onUnauthorized: (() => void) | null = null;
export function setUnauthorizedHandler(handler: (() => void) | null) {
  onUnauthorized = handler;
}

/** The server refused the session's token outside an API call (the live status stream). */
export function sessionEnded(): void {
  onUnauthorized?.();
}

const auth: Middleware = {
  onRequest({ request }) {
    const token = session.token;
    if (token) request.headers.set('authorization', `Bearer ${token}`);
    return request;
  },
  onResponse({ response, request }) {
    if (endsSession(response.status, request.url)) onUnauthorized?.();
    return response;
  },
};

export const api = createClient<paths>({ baseUrl: window.location.origin });
api.use(auth);

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
    throw new ApiError(0, UNREACHABLE);
  }
  const { data, error, response } = out;
  if (response.ok) return data as T;
  throw errorFromResponse(response.status, response.statusText, error, response.headers.get('retry-after'));
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
      if (endsSession(xhr.status, '/api/scans')) onUnauthorized?.();
      reject(errorFromResponse(xhr.status, xhr.statusText, xhr.response, xhr.getResponseHeader('retry-after')));
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
    if (endsSession(res.status, res.url)) onUnauthorized?.();
    throw errorFromResponse(res.status, res.statusText, await res.json().catch(() => null), res.headers.get('retry-after'));
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
