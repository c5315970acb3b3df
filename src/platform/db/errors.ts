/** What a database error means, whichever driver (pg or PGlite) raised it. */

/** A unique constraint refused the write (SQLSTATE 23505): the row is there already. */
export function isUniqueViolation(err: unknown): boolean {
  // Drizzle wraps driver errors; the SQLSTATE lives on the error or its cause.
  const e = err as { code?: string; cause?: { code?: string } } | null | undefined;
  return e?.code === '23505' || e?.cause?.code === '23505';
}

/**
 * Codes of a PostgreSQL server that cannot be reached or is going away: the socket's (refused,
 * reset, timed out, unknown host) and the server's (SQLSTATE class 08, connection exception;
 * 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now; 53300 too many
 * connections). Each ends by itself once the server is back, unlike a wrong password or query.
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
      if (UNREACHABLE_CODES.has(code) || code.startsWith('08')) return true;
    } else if (UNREACHABLE_MESSAGE.test(e.message)) {
      return true;
    }
    // Several addresses tried (localhost: ::1 and 127.0.0.1), each refused.
    if (e instanceof AggregateError && e.errors.some((inner) => isDatabaseUnreachable(inner))) return true;
  }
  return false;
}
