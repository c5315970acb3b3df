/** The Google sign-in user store over the users table. */
import { and, eq, isNull, or } from 'drizzle-orm';
import type { Db } from '../../platform/db/index.js';
import { users } from '../../platform/db/schema.js';
import { findUserByEmail, findUserByGoogleSubject, insertUser, type UserRow } from '../../users/repository.js';
import type { GoogleUser, GoogleUserStore } from './service.js';

const toGoogleUser = (u: UserRow): GoogleUser => ({
  id: u.id,
  email: u.email,
  name: u.name,
  role: u.role,
  isActive: u.isActive,
  googleSubject: u.googleSubject,
});

export function createGoogleUserStore(db: Db): GoogleUserStore {
  return {
    async findByGoogleSubject(sub) {
      const u = await findUserByGoogleSubject(db, sub);
      return u ? toGoogleUser(u) : null;
    },
    async findByEmail(email) {
      const u = await findUserByEmail(db, email);
      return u ? toGoogleUser(u) : null;
    },
    async linkGoogleSubject(userId, sub) {
      const rows = await db
        .update(users)
        .set({ googleSubject: sub, updatedAt: new Date() })
        // Already linked to this same subject is fine: two tabs finishing one sign-in race here.
        .where(and(eq(users.id, userId), or(isNull(users.googleSubject), eq(users.googleSubject, sub))))
        .returning({ id: users.id });
      if (rows.length !== 1) throw new Error('user is already linked to another Google account');
    },
    async createFromGoogle({ email, name, sub, isActive }) {
      const u = await insertUser(db, { email, name, googleSubject: sub, isActive, role: 'doctor', passwordHash: null });
      return toGoogleUser(u);
    },
  };
}
