/** What a database error means, whichever driver (pg or PGlite) raised it. */

/** A unique constraint refused the write (SQLSTATE 23505): the row is there already. */
export function isUniqueViolation(err: unknown): boolean {
  // Drizzle wraps driver errors; the SQLSTATE lives on the error or its cause.
  const e = err as { code?: string; cause?: { code?: string } } | null | undefined;
  return e?.code === '23505' || e?.cause?.code === '23505';
}
