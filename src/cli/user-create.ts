/**
 * npm run user:create -- --email a@b.org --password '...' --name 'Dr A' --role doctor [--specialization Neurology]
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../platform/config.js';
import { openDatabase } from '../platform/db/index.js';
import { AppError } from '../platform/errors.js';
import { createUser } from '../users/service.js';

const usage =
  "usage: npm run user:create -- --email EMAIL --password PASSWORD --name NAME [--role doctor|admin] [--specialization TEXT]";

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      email: { type: 'string' },
      password: { type: 'string' },
      name: { type: 'string' },
      role: { type: 'string', default: 'doctor' },
      specialization: { type: 'string' },
    },
  });
  if (!values.email || !values.password || !values.name) {
    console.error(usage);
    return 2;
  }
  if (values.role !== 'doctor' && values.role !== 'admin') {
    console.error(`--role must be doctor or admin\n${usage}`);
    return 2;
  }
  if (!/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(values.email)) {
    console.error(`--email is not an email address\n${usage}`);
    return 2;
  }
  const config = loadConfig();
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, preparedStatements: config.databasePreparedStatements });
  try {
    const user = await createUser(database.db, {
      email: values.email,
      password: values.password,
      name: values.name,
      role: values.role,
      specialization: values.specialization ?? null,
    });
    console.log(`Created ${user.role} ${user.email} (_id ${user.id})`);
    return 0;
  } catch (err) {
    if (err instanceof AppError) {
      console.error(`Could not create the user: ${err.message}`);
      return 1;
    }
    throw err;
  } finally {
    await database.close();
  }
}

main().then((code) => process.exit(code), (err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
