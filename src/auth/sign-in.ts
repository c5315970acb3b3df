/**
 * Signing in with an email and password, behind the brute-force throttle: a locked account
 * or address is refused before the password is even checked, each wrong password counts
 * against both, and a right one clears the account's count.
 */
import type { Db } from '../platform/db/index.js';
import { AppError } from '../platform/errors.js';
import type { UserRow } from '../users/repository.js';
import { authenticate } from '../users/service.js';
import type { LoginThrottle } from './throttle.js';

export async function signIn(
  deps: { db: Db; loginThrottle: LoginThrottle },
  { email, password, ip }: { email: string; password: string; ip: string },
): Promise<UserRow> {
  await deps.loginThrottle.check(email, ip);
  let user: UserRow;
  try {
    user = await authenticate(deps.db, email, password);
  } catch (err) {
    if (err instanceof AppError && err.code === 'unauthorized') await deps.loginThrottle.recordFailure(email, ip);
    throw err;
  }
  await deps.loginThrottle.recordSuccess(email);
  return user;
}
