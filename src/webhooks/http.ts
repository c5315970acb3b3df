/**
 * The HTTP side of a delivery: one POST, no redirects followed, one deadline for the whole
 * exchange, connecting only to the addresses that target.ts vetted. Built on node:http
 * rather than fetch because fetch cannot be told which address to connect to (its undici
 * dispatcher is not a dependency here) and follows redirects by default.
 */
import type { LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';

interface WebhookRequest {
  url: URL;
  /** The vetted addresses of url's host; the connection goes to one of these. */
  addresses: LookupAddress[];
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
}

interface WebhookResponse {
  statusCode: number;
}

/** Sends one delivery; resolves with the receiver's status, rejects on network errors and timeouts. */
export type WebhookSender = (request: WebhookRequest) => Promise<WebhookResponse>;

class DeliveryTimeoutError extends Error {
  override name = 'DeliveryTimeoutError';
}

/** A `lookup` that answers only with the vetted addresses, never asking DNS again. */
function pinnedLookup(addresses: LookupAddress[]): LookupFunction {
  return (_hostname, options, callback) => {
    const usable = options.family === 4 || options.family === 6 ? addresses.filter((a) => a.family === options.family) : addresses;
    if (usable.length === 0) {
      callback(Object.assign(new Error('no vetted address of the requested family'), { code: 'ENOTFOUND' }), '', 0);
    } else if (options.all) {
      callback(null, usable);
    } else {
      callback(null, usable[0]!.address, usable[0]!.family);
    }
  };
}

export const sendWebhook: WebhookSender = ({ url, addresses, headers, body, timeoutMs }) =>
  new Promise((resolve, reject) => {
    const signal = AbortSignal.timeout(timeoutMs);
    const client = url.protocol === 'https:' ? https : http;
    const payload = Buffer.from(body);
    const request = client.request(
      url,
      {
        method: 'POST',
        headers: { ...headers, 'content-length': String(payload.length) },
        // A fresh connection each time: no pooled socket to an address vetted for another host.
        agent: false,
        lookup: pinnedLookup(addresses),
        signal,
      },
      (response) => {
        // The status is all a delivery needs; the body is not read (it could be large or slow).
        resolve({ statusCode: response.statusCode ?? 0 });
        response.destroy();
      },
    );
    request.on('error', (err) => {
      reject(signal.aborted ? new DeliveryTimeoutError(`timed out after ${timeoutMs} ms`) : err);
    });
    request.end(payload);
  });
