/**
 * Brute-force protection for sign-ins, per account and per client address, kept in the
 * database so every API process shares it. An account is slowed after a few failures (each
 * further try must wait, doubling up to a minute), then locked for LOGIN_LOCKOUT_MINUTES
 * after LOGIN_MAX_FAILURES; an address is locked for the window after LOGIN_MAX_FAILURES_PER_IP
 * failures on any accounts. Refusals are 429 with Retry-After; an admin can unlock an account
 * early (POST /api/users/users/:id/unlock). Unknown emails are counted like real ones, so
 * the answers never tell whether an account exists.
 */
import { createHash } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import type { DbOrTx } from '../platform/db/index.js';
import { loginThrottle } from '../platform/db/schema.js';
import { AppError } from '../platform/errors.js';

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

export const DEFAULT_THROTTLE: ThrottlePolicy = { slowAfter: 3, lockAfter: 10, lockMinutes: 15, maxPerIp: 50, windowMinutes: 15 };

const digest = (kind: 'account' | 'ip', value: string) =>
  `${kind}:${createHash('sha256').update(`${kind}\n${value.trim().toLowerCase()}`).digest('hex')}`;

export class LoginThrottledError extends AppError {
  constructor(readonly retryAfterSeconds: number) {
    super(
      'rate_limited',
      `Too many failed sign-ins: try again in ${retryAfterSeconds} seconds, or ask an administrator to unlock the account`,
    );
  }
}

export interface LoginThrottle {
  /** Throws LoginThrottledError while the account or the address is locked. */
  check(email: string, ip: string): Promise<void>;
  recordFailure(email: string, ip: string): Promise<void>;
  recordSuccess(email: string): Promise<void>;
  unlock(email: string): Promise<void>;
}

export function createLoginThrottle(db: DbOrTx, policy: ThrottlePolicy = DEFAULT_THROTTLE, now = () => new Date()): LoginThrottle {
  async function lockedFor(key: string): Promise<number> {
    const [row] = await db.select({ lockedUntil: loginThrottle.lockedUntil }).from(loginThrottle).where(eq(loginThrottle.key, key));
    const until = row?.lockedUntil?.getTime() ?? 0;
    return Math.max(0, Math.ceil((until - now().getTime()) / 1000));
  }

  /** One atomic upsert: concurrent failures in several processes all count. */
  async function bump(key: string): Promise<{ failures: number; windowStartedAt: Date }> {
    const at = now();
    const windowStart = new Date(at.getTime() - policy.windowMinutes * 60_000);
    const [row] = await db
      .insert(loginThrottle)
      .values({ key, failures: 1, windowStartedAt: at })
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
      const wait = Math.max(await lockedFor(digest('ip', ip)), await lockedFor(digest('account', email)));
      if (wait > 0) throw new LoginThrottledError(wait);
    },
    async recordFailure(email, ip) {
      const account = digest('account', email);
      const { failures } = await bump(account);
      if (failures >= policy.lockAfter) await lock(account, policy.lockMinutes * 60);
      else if (failures >= policy.slowAfter) await lock(account, Math.min(60, 2 ** (failures - policy.slowAfter)));
      const address = digest('ip', ip);
      const perIp = await bump(address);
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
  };
}
