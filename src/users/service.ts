import type { Db } from '../platform/db/index.js';
import { isUniqueViolation } from '../platform/db/errors.js';
import { AppError, conflict, notFound } from '../platform/errors.js';
import { dummyPasswordHash, hashPassword, verifyPassword } from '../auth/password.js';
import { assertStrongPassword } from '../auth/password-policy.js';
import {
  countActiveAdmins,
  findUserByEmail,
  findUserById,
  insertUser,
  listUserRows,
  updateUserRow,
  bumpTokenVersion,
  setPasswordHash,
  type UserRow,
} from './repository.js';
import type { LoginThrottle } from '../auth/throttle.js';

export type Role = 'doctor' | 'admin';

export interface PublicUser {
  _id: string;
  name: string;
  email: string;
  role: Role;
  specialization: string | null;
  isActive: boolean;
}

export function toPublicUser(u: UserRow): PublicUser {
  return {
    _id: u.id,
    name: u.name,
    email: u.email,
    role: u.role,
    specialization: u.specialization,
    isActive: u.isActive,
  };
}

export interface CreateUserInput {
  name: string;
  email: string;
  password: string;
  role: Role;
  specialization?: string | null;
}

export async function createUser(db: Db, input: CreateUserInput): Promise<UserRow> {
  const email = input.email.trim().toLowerCase();
  assertStrongPassword(input.password, { email, name: input.name });
  if (await findUserByEmail(db, email)) throw conflict(`A user with email ${email} already exists`);
  try {
    return await insertUser(db, {
      name: input.name.trim(),
      email,
      passwordHash: await hashPassword(input.password),
      role: input.role,
      specialization: input.specialization ?? null,
    });
  } catch (err) {
    // Two concurrent creates of one email: the unique index decides.
    if (isUniqueViolation(err)) throw conflict(`A user with email ${email} already exists`);
    throw err;
  }
}

export function findUser(db: Db, id: string): Promise<UserRow | null> {
  return findUserById(db, id);
}

export function listUsers(db: Db): Promise<UserRow[]> {
  return listUserRows(db);
}

export interface UpdateUserInput {
  actorId: string;
  userId: string;
  changes: { name?: string; role?: Role; isActive?: boolean; specialization?: string | null; password?: string };
}

export async function updateUser(db: Db, { actorId, userId, changes }: UpdateUserInput): Promise<UserRow> {
  return db.transaction(async (tx) => {
    const { password, ...rest } = changes;
    const values: Parameters<typeof updateUserRow>[2] = { ...rest };
    if (rest.name !== undefined) values.name = rest.name.trim();
    const before = await findUserById(tx, userId);
    if (!before) throw notFound('User');
    if (password !== undefined) {
      assertStrongPassword(password, { email: before.email, name: values.name ?? before.name });
      values.passwordHash = await hashPassword(password);
    }
    // Every token issued before a password change, a role change or a deactivation is refused.
    const endsSessions =
      password !== undefined ||
      (rest.role !== undefined && rest.role !== before.role) ||
      (rest.isActive === false && before.isActive);
    if (endsSessions) values.tokenVersion = before.tokenVersion + 1;
    const losesAdmin =
      before.role === 'admin' && before.isActive && (rest.role === 'doctor' || rest.isActive === false);
    if (losesAdmin && (await countActiveAdmins(tx)) <= 1) {
      throw conflict('This is the last active admin: make another user admin first');
    }
    if (userId === actorId && rest.isActive === false) {
      throw new AppError('bad_request', 'You cannot deactivate your own account');
    }
    const row = await updateUserRow(tx, userId, values);
    if (!row) throw notFound('User');
    return row;
  });
}

/**
 * Checks an email and password. Every failure gives the same message, so the answer never
 * tells whether an account exists; a deactivated account is told so only after the right
 * password, which proves the caller owns it.
 */
export async function authenticate(db: Db, email: string, password: string): Promise<UserRow> {
  const user = await findUserByEmail(db, email.trim());
  if (!user || !user.passwordHash) {
    await verifyPassword(await dummyPasswordHash(), password);
    throw new AppError('unauthorized', 'Invalid email or password');
  }
  if (!(await verifyPassword(user.passwordHash, password))) {
    throw new AppError('unauthorized', 'Invalid email or password');
  }
  if (!user.isActive) {
    throw new AppError('forbidden', 'This account is deactivated: ask an administrator to activate it');
  }
  return user;
}

export interface ChangeOwnPasswordInput {
  userId: string;
  currentPassword: string;
  newPassword: string;
  /** The client address: wrong current passwords count against it like failed sign-ins. */
  ip: string;
}

/**
 * A signed-in user changes their own password. The current password is required (a token
 * left on an unlocked screen is not enough), and wrong ones count as failed sign-ins of the
 * account and the address (the same throttle and lockout). The new one must pass the strength
 * check. Every token issued before, on every device, stops working; the caller gets a new one.
 */
export async function changeOwnPassword(
  deps: { db: Db; loginThrottle: LoginThrottle },
  { userId, currentPassword, newPassword, ip }: ChangeOwnPasswordInput,
): Promise<UserRow> {
  const user = await findUserById(deps.db, userId);
  if (!user) throw notFound('User');
  if (!user.passwordHash) {
    throw new AppError('bad_request', 'This account signs in with Google and has no password to change');
  }
  await deps.loginThrottle.check(user.email, ip);
  if (!(await verifyPassword(user.passwordHash, currentPassword))) {
    await deps.loginThrottle.recordFailure(user.email, ip);
    // 403, not 401: the session is fine, the proof of knowing the password is not.
    throw new AppError('forbidden', 'The current password is not correct');
  }
  if (newPassword === currentPassword) throw new AppError('bad_request', 'The new password must differ from the current one');
  assertStrongPassword(newPassword, { email: user.email, name: user.name });
  const row = await setPasswordHash(deps.db, user.id, await hashPassword(newPassword));
  if (!row) throw notFound('User');
  await deps.loginThrottle.recordSuccess(user.email);
  return row;
}

/** Refuses every token issued so far to the user (logout). */
export async function endSessions(db: Db, userId: string): Promise<void> {
  await bumpTokenVersion(db, userId);
}

/** First start: create the admin named by ADMIN_EMAIL / ADMIN_PASSWORD if no admin exists. */
export async function ensureBootstrapAdmin(
  db: Db,
  email: string | null,
  password: string | null,
): Promise<UserRow | null> {
  if (!email || !password) return null;
  if ((await countActiveAdmins(db)) > 0) return null;
  const existing = await findUserByEmail(db, email);
  if (existing) {
    return updateUserRow(db, existing.id, { role: 'admin', isActive: true });
  }
  return createUser(db, { name: 'Administrator', email, password, role: 'admin' });
}
