// A small cookie-carrying "browser" that drives the Google sign-in redirect dance between an
// app (through `app.inject`) and the test identity provider (over the network), plus the
// assertions on where the browser ends up. Shared by the Google sign-in tests.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import type { FastifyInstance } from 'fastify';

import type { TestAccount, TestIdentityProvider } from './provider.js';

export interface BrowserSite {
  /** The provider the browser signs in at. */
  idp: TestIdentityProvider;
  /** Origin of the app, e.g. http://imagemedix.test; requests to it go through `app.inject`. */
  appOrigin: string;
  /** GOOGLE_CALLBACK_URL. */
  callbackUrl: string;
  /** CLIENT_URL without fragment: where a sign-in ends. */
  clientUrl: string;
}

export interface SignInResult {
  /** Every URL the browser requested, in order. */
  hops: string[];
  /** The URL the browser ended on (CLIENT_URL with a fragment, on success or error). */
  final: URL;
  fragment: URLSearchParams;
  callbackUrl?: string;
}

export interface FollowOptions {
  beforeCallback?: (callback: URL) => void;
  stopAtCallback?: boolean;
}

interface StoredCookie {
  name: string;
  value: string;
  path: string;
}

/**
 * Follows redirects the way a browser does, keeping cookies per origin and path. Requests to
 * the app go through `app.inject`; requests to the provider go over the network.
 */
export class OidcBrowser {
  private readonly jars = new Map<string, StoredCookie[]>();
  onAppRequest: ((pathAndQuery: string, cookie: string) => void) | undefined;

  constructor(
    private readonly app: FastifyInstance,
    private readonly site: BrowserSite,
  ) {}

  /** Starts at GET /api/auth/google, with `who` signing in (or denying consent) at the provider. */
  async signInAs(who: TestAccount | { deny: true }, options: FollowOptions = {}): Promise<SignInResult> {
    const { idp } = this.site;
    if ('deny' in who) {
      idp.setNextSignIn(who);
    } else {
      idp.addAccount(who);
      idp.setNextSignIn({ accountId: who.sub });
    }
    return this.follow(`${this.site.appOrigin}/api/auth/google`, options);
  }

  async follow(startUrl: string, options: FollowOptions = {}): Promise<SignInResult> {
    const { callbackUrl: CALLBACK_URL, clientUrl: CLIENT_URL } = this.site;
    const hops: string[] = [];
    let callbackUrl: string | undefined;
    let url = new URL(startUrl);
    for (let hop = 0; hop < 20; hop += 1) {
      if (`${url.origin}${url.pathname}` === CLIENT_URL) {
        return { hops, final: url, fragment: new URLSearchParams(url.hash.slice(1)), ...(callbackUrl ? { callbackUrl } : {}) };
      }
      if (`${url.origin}${url.pathname}` === CALLBACK_URL) {
        options.beforeCallback?.(url);
        callbackUrl = url.href;
        if (options.stopAtCallback === true) return { hops, final: url, fragment: new URLSearchParams(), callbackUrl };
      }
      hops.push(url.href);
      const { status, location, setCookies } = await this.request(url);
      this.store(url, setCookies);
      if (status < 300 || status >= 400 || location === undefined) {
        throw new Error(`stopped at ${url.origin}${url.pathname} with status ${status}`);
      }
      url = new URL(location, url);
    }
    throw new Error('too many redirects');
  }

  private async request(url: URL): Promise<{ status: number; location: string | undefined; setCookies: string[] }> {
    const cookie = this.cookiesFor(url);
    if (url.origin === this.site.appOrigin) {
      const pathAndQuery = `${url.pathname}${url.search}`;
      this.onAppRequest?.(pathAndQuery, cookie);
      const res = await this.app.inject({ method: 'GET', url: pathAndQuery, headers: cookie === '' ? {} : { cookie } });
      const setCookie = res.headers['set-cookie'];
      return {
        status: res.statusCode,
        location: typeof res.headers.location === 'string' ? res.headers.location : undefined,
        setCookies: setCookie === undefined ? [] : Array.isArray(setCookie) ? setCookie : [setCookie],
      };
    }
    const res = await fetch(url, { redirect: 'manual', headers: cookie === '' ? {} : { cookie } });
    await res.arrayBuffer();
    return { status: res.status, location: res.headers.get('location') ?? undefined, setCookies: res.headers.getSetCookie() };
  }

  private store(url: URL, setCookies: string[]): void {
    const jar = this.jars.get(url.origin) ?? [];
    for (const header of setCookies) {
      const [pair = '', ...attributes] = header.split(';').map((part) => part.trim());
      const separator = pair.indexOf('=');
      const name = pair.slice(0, separator);
      const value = pair.slice(separator + 1);
      const path = attributes.find((attribute) => attribute.toLowerCase().startsWith('path='))?.slice(5) ?? '/';
      const expired = attributes.some(
        (attribute) => attribute.toLowerCase() === 'max-age=0' || attribute.toLowerCase().startsWith('expires=thu, 01 jan 1970'),
      );
      const kept = jar.filter((cookie) => !(cookie.name === name && cookie.path === path));
      if (!expired) kept.push({ name, value, path });
      jar.splice(0, jar.length, ...kept);
    }
    this.jars.set(url.origin, jar);
  }

  private cookiesFor(url: URL): string {
    return (this.jars.get(url.origin) ?? [])
      .filter((cookie) => url.pathname === cookie.path || url.pathname.startsWith(cookie.path.endsWith('/') ? cookie.path : `${cookie.path}/`))
      .map((cookie) => `${cookie.name}=${cookie.value}`)
      .join('; ');
  }
}

/** Where a single redirect (a Location header) sends the browser, read as a sign-in result. */
export function redirectResult(location: string | string[] | undefined): SignInResult {
  const final = new URL(String(location));
  return { hops: [], final, fragment: new URLSearchParams(final.hash.slice(1)) };
}

/** Assertions that a sign-in ended on `clientUrl` with a token, or with an error code. */
export function signInAssertions(clientUrl: string): {
  assertSignedIn: (result: SignInResult) => string;
  assertSignInError: (result: SignInResult, code: string) => void;
} {
  return {
    assertSignedIn(result) {
      assert.equal(`${result.final.origin}${result.final.pathname}`, clientUrl, `ended on ${result.final.href}`);
      assert.equal(result.fragment.get('error'), null, `sign-in failed: ${result.fragment.get('error_description')}`);
      const token = result.fragment.get('token');
      assert.ok(token, 'no token in the fragment');
      assert.equal(result.final.search, '');
      return token;
    },
    assertSignInError(result, code) {
      assert.equal(`${result.final.origin}${result.final.pathname}`, clientUrl, `ended on ${result.final.href}`);
      assert.equal(result.fragment.get('error'), code, `description: ${result.fragment.get('error_description')}`);
      assert.ok((result.fragment.get('error_description') ?? '').length > 10);
      assert.equal(result.fragment.get('token'), null);
      assert.equal(result.final.search, '');
    },
  };
}

let accountCounter = 0;

/** A Google account with a fresh subject and, unless given, a fresh verified email. */
export function newAccount(fields: Partial<TestAccount> = {}): TestAccount {
  accountCounter += 1;
  const id = randomUUID().slice(0, 8);
  return {
    sub: String(100_000_000_000_000 + accountCounter * 7919 + Math.floor(Math.random() * 1000)),
    email: `doctor.${id}@Example.org`,
    emailVerified: true,
    name: `Doctor ${id}`,
    ...fields,
  };
}
