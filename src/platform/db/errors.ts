/** What a database error means, whichever driver (pg or PGlite) raised it. */

/** A unique constraint refused the write (SQLSTATE 23505): the row is there already. */
export function isUniqueViolation(err: unknown): boolean {
  // Drizzle wraps driver errors; the SQLSTATE lives on the error or its cause.
  const e = err as { code?: string; cause?: { code?: string } } | null | undefined;
  return e?.code === '23505' || e?.cause?.code === '23505';
}

/** A foreign key refused the write (SQLSTATE 23503): the row it points to is gone. */
export function isForeignKeyViolation(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } } | null | undefined;
  return e?.code === '23503' || e?.cause?.code === '23503';
}

/**
 * Codes of a PostgreSQL server that cannot be reached or is going away: the socket's (refused,
 * reset, timed out, unknown host) and the server's (SQLSTATE class 08, connection exception, but
 * see NOT_AN_OUTAGE; 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now; 53300
 * too many connections). Each ends by itself once the server is back, unlike a wrong password or query.
 */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  '57P01',
  '57P02',
  '57P03',
  '53300',
]);

/**
 * The class-08 codes that are not about reaching the server, so never heal by waiting: 08P01
 * protocol_violation (client and server disagree on the wire: not PostgreSQL at that address, a
 * startup parameter a pooler refuses) and 08004 sqlserver_rejected_establishment_of_sqlconnection
 * (a server that answered and turned the login down).
 */
const NOT_AN_OUTAGE = new Set(['08P01', '08004']);

/**
 * PgBouncer, though, answers its own outages with 08P01 as well (the PostgreSQL server behind it
 * down or restarting, its pools full, a server connection lost), in these words of its own.
 */
const POOLER_OUTAGE_MESSAGE = /^(pgbouncer cannot connect to server|server login has been failing|no more connections allowed|query_wait_timeout|server conn crashed\?)/;

function outageCode(code: string, message: string): boolean {
  if (UNREACHABLE_CODES.has(code)) return true;
  if (code === '08P01') return POOLER_OUTAGE_MESSAGE.test(message);
  return code.startsWith('08') && !NOT_AN_OUTAGE.has(code);
}

/** pg's own errors for a connection lost or never made; they carry no code. */
const UNREACHABLE_MESSAGE = /^(Connection terminated|Client has encountered a connection error|timeout expired|timeout exceeded when trying to connect)/;

/**
 * The database could not be reached or dropped the connection (an outage or a restart), as
 * opposed to a statement it refused. Follows Drizzle's wrapper to the driver's error; only
 * pg's own code-less errors are recognised by message (Drizzle's names the failed statement).
 */
export function isDatabaseUnreachable(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 4; e = e.cause, depth++) {
    const { code } = e as { code?: unknown };
    if (typeof code === 'string') {
      if (outageCode(code, e.message)) return true;
    } else if (UNREACHABLE_MESSAGE.test(e.message)) {
      return true;
    }
    // Several addresses tried (localhost: ::1 and 127.0.0.1), each refused.
    if (e instanceof AggregateError && e.errors.some((inner) => isDatabaseUnreachable(inner))) return true;
  }
  return false;
}
