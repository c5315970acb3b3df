/**
 * First start. With ADMIN_EMAIL/ADMIN_PASSWORD set, that admin is created when no admin
 * exists. Without them, and with no user at all, an admin with a random password is created
 * and the password is written once to DATA_DIR/initial-admin-password (mode 600), so
 * `npm start` on a fresh machine gives a way in without a default password in the code.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Config } from '../platform/config.js';
import type { Db } from '../platform/db/index.js';
import { listUserRows } from './repository.js';
import { createUser, ensureBootstrapAdmin } from './service.js';

const DEFAULT_ADMIN_EMAIL = 'admin@imagemedix.local';

export async function bootstrapAdmin(db: Db, config: Config, log: Logger): Promise<void> {
  if (config.adminEmail && config.adminPassword) {
    const admin = await ensureBootstrapAdmin(db, config.adminEmail, config.adminPassword);
    if (admin) log.info({ userId: admin.id }, 'created the admin named by ADMIN_EMAIL');
    return;
  }
  if ((await listUserRows(db)).length > 0) return;
  const password = randomBytes(12).toString('base64url');
  const admin = await createUser(db, { name: 'Administrator', email: DEFAULT_ADMIN_EMAIL, password, role: 'admin' });
  const file = path.join(config.dataDir, 'initial-admin-password');
  writeFileSync(file, `${DEFAULT_ADMIN_EMAIL}\n${password}\n`, { mode: 0o600 });
  log.info({ userId: admin.id }, `first start: created admin ${DEFAULT_ADMIN_EMAIL}; its password is in ${file}`);
}
