/**
 * Ids are UUIDs, made by the server (randomUUID: lower-case). One pattern for every place that
 * recognises one: API input, signed links, storage keys and the files named after them.
 */

/** A UUID, lower-case, as regular-expression source to embed in a larger pattern (a storage key). */
export const UUID_PATTERN = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

const UUID = new RegExp(`^${UUID_PATTERN}$`, 'i');

/**
 * Whether `s` is a UUID, in either case (as PostgreSQL reads one). Ids are UUIDs; anything else
 * cannot name a row, so it is simply "not found".
 */
export const isUuid = (s: string): boolean => UUID.test(s);
