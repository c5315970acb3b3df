/**
 * Brute-force protection for sign-ins, per account and per client address, kept in the
 * database so every API process shares it. An account is slowed after a few failures (each
 * further try must wait, doubling up to a minute), then locked for LOGIN_LOCKOUT_MINUTES
 * after LOGIN_MAX_FAILURES; an address is locked for the window after LOGIN_MAX_FAILURES_PER_IP
 * failures on any accounts. Refusals are 429 with Retry-After; an admin can unlock an account
 * early (POST /api/users/users/:id/unlock), and see and lift the locks of addresses
 * (GET /api/users/ip-locks, POST /api/users/ip-locks/:ip/unlock). Unknown emails are counted
 * like real ones, so the answers never tell whether an account exists.
 *
 * Why the database and not Redis, even when REDIS_URL is set: the counters must be shared by
 * every API process (the database already is), survive a restart (a lock that a restart lifts
 * is no lock), and be exact under concurrent failures (one atomic upsert). Only failed sign-ins
 * write; a sign-in reads two rows by primary key. Redis stays optional, for the request limit.
 */
import { createHash } from 'node:crypto';
import { and, asc, eq, gt, isNotNull, sql } from 'drizzle-orm';
import ipaddr from 'ipaddr.js';
import type { DbOrTx } from '../platform/db/index.js';
import { loginThrottle } from '../platform/db/schema.js';
import { AppError } from '../platform/errors.js';
import { waitInWords } from '../platform/wait-in-words.js';

export interface ThrottlePolicy {
  /** Failures of one account after which each try must wait (doubling from 1 s). */
  slowAfter: number;
  /** Failures of one account that lock it. */
  lockAfter: number;
  lockMinutes: number;
  /** Failures from one address, on any accounts, within the window, that lock the address. */
  maxPerIp: number;
  windowMinutes: number;
}

const DEFAULT_THROTTLE: ThrottlePolicy = { slowAfter: 3, lockAfter: 10, lockMinutes: 15, maxPerIp: 50, windowMinutes: 15 };

const digest = (kind: 'account' | 'ip', value: string) =>
  `${kind}:${createHash('sha256').update(`${kind}\n${value.trim().toLowerCase()}`).digest('hex')}`;

/** One spelling per address (`::ffff:10.0.0.1` is 10.0.0.1, IPv6 compressed), so a lock is found however it is written. */
export function canonicalAddress(ip: string): string {
  const trimmed = ip.trim();
  return isIpAddress(trimmed) ? ipaddr.process(trimmed).toString() : trimmed;
}

/** A dotted IPv4 or an IPv6 address (not ipaddr's looser forms such as `1` or `0x7f.1`). */
export function isIpAddress(s: string): boolean {
  return ipaddr.IPv4.isValidFourPartDecimal(s) || ipaddr.IPv6.isValid(s);
}

interface AddressLock {
  ip: string;
  failures: number;
  windowStartedAt: Date;
  lockedUntil: Date;
}

class LoginThrottledError extends AppError {
  constructor(retryAfterSeconds: number, locked: 'account' | 'address') {
    const wait = waitInWords(retryAfterSeconds);
    // An account's lock and an address's are lifted by different admin actions: name the right one.
    super(
      'rate_limited',
      locked === 'address'
        ? `Too many failed sign-ins from this network address: try again in ${wait}, or ask an administrator to lift the lock on this address`
        : `Too many failed sign-ins for this account: try again in ${wait}, or ask an administrator to unlock the account`,
      retryAfterSeconds,
    );
  }
}

export interface LoginThrottle {
  /** Throws LoginThrottledError while the account or the address is locked. */
  check(email: string, ip: string): Promise<void>;
  recordFailure(email: string, ip: string): Promise<void>;
  recordSuccess(email: string): Promise<void>;
  unlock(email: string): Promise<void>;
  /** The addresses locked now, longest lock first. */
  lockedAddresses(): Promise<AddressLock[]>;
  /** Lifts an address's lock and forgets its failures; false when it was not locked. */
  unlockAddress(ip: string): Promise<boolean>;
}

export function createLoginThrottle(db: DbOrTx, policy: ThrottlePolicy = DEFAULT_THROTTLE, now = () => new Date()): LoginThrottle {
  async function lockedFor(key: string): Promise<number> {
    const [row] = await db.select({ lockedUntil: loginThrottle.lockedUntil }).from(loginThrottle).where(eq(loginThrottle.key, key));
    const until = row?.lockedUntil?.getTime() ?? 0;
    return Math.max(0, Math.ceil((until - now().getTime()) / 1000));
  }

  /** One atomic upsert: concurrent failures in several processes all count. */
  async function bump(key: string, ip: string | null = null): Promise<{ failures: number; windowStartedAt: Date }> {
    const at = now();
    const windowStart = new Date(at.getTime() - policy.windowMinutes * 60_000);
    const [row] = await db
      .insert(loginThrottle)
      .values({ key, failures: 1, windowStartedAt: at, ip })
      .onConflictDoUpdate({
        target: loginThrottle.key,
        set: {
          failures: sql`case when ${loginThrottle.windowStartedAt} < ${windowStart} and coalesce(${loginThrottle.lockedUntil}, ${windowStart}) <= ${at} then 1 else ${loginThrottle.failures} + 1 end`,
          windowStartedAt: sql`case when ${loginThrottle.windowStartedAt} < ${windowStart} and coalesce(${loginThrottle.lockedUntil}, ${windowStart}) <= ${at} then ${at} else ${loginThrottle.windowStartedAt} end`,
        },
      })
      .returning({ failures: loginThrottle.failures, windowStartedAt: loginThrottle.windowStartedAt });
    return row!;
  }

  async function lock(key: string, seconds: number): Promise<void> {
    await db
      .update(loginThrottle)
      .set({ lockedUntil: new Date(now().getTime() + seconds * 1000) })
      .where(eq(loginThrottle.key, key));
  }

  return {
    async check(email, ip) {
      const [address, account] = [await lockedFor(digest('ip', canonicalAddress(ip))), await lockedFor(digest('account', email))];
      if (address > 0 || account > 0) throw new LoginThrottledError(Math.max(address, account), address >= account ? 'address' : 'account');
    },
    async recordFailure(email, ip) {
      const account = digest('account', email);
      const { failures } = await bump(account);
      if (failures >= policy.lockAfter) await lock(account, policy.lockMinutes * 60);
      else if (failures >= policy.slowAfter) await lock(account, Math.min(60, 2 ** (failures - policy.slowAfter)));
      const client = canonicalAddress(ip);
      const address = digest('ip', client);
      const perIp = await bump(address, client);
      if (perIp.failures >= policy.maxPerIp) {
        const windowEnd = perIp.windowStartedAt.getTime() + policy.windowMinutes * 60_000;
        await lock(address, Math.max(1, Math.ceil((windowEnd - now().getTime()) / 1000)));
      }
    },
    async recordSuccess(email) {
      await db.delete(loginThrottle).where(eq(loginThrottle.key, digest('account', email)));
    },
    async unlock(email) {
      await db.delete(loginThrottle).where(eq(loginThrottle.key, digest('account', email)));
    },
    async lockedAddresses() {
      const rows = await db
        .select()
        .from(loginThrottle)
        .where(and(isNotNull(loginThrottle.ip), gt(loginThrottle.lockedUntil, now())))
        .orderBy(asc(loginThrottle.lockedUntil));
      return rows.reverse().map((r) => ({ ip: r.ip!, failures: r.failures, windowStartedAt: r.windowStartedAt, lockedUntil: r.lockedUntil! }));
    },
    async unlockAddress(ip) {
      const removed = await db
        .delete(loginThrottle)
        .where(and(eq(loginThrottle.key, digest('ip', canonicalAddress(ip))), gt(loginThrottle.lockedUntil, now())))
        .returning({ key: loginThrottle.key });
      return removed.length > 0;
    },
  };
}
