/**
 * The write generation of an embedded (PGlite) database: a number that moves whenever its data
 * may have changed. In the PGlite deployment one process owns the database and every statement
 * goes through its client, so a result read at generation g is exactly the database's answer
 * for as long as the generation is still g: read caches keyed by it need no expiry.
 *
 * The generation moves before and after every statement that may write (anything but a plain
 * SELECT, and all of pg-boss's SQL), and when a transaction begins and ends. A read issued while a
 * write is in flight is therefore never kept past that write. Audit rows (append-only, never
 * read back by the pages cached) do not move it: each request writes one.
 */
import type { PGlite } from '@electric-sql/pglite';

export interface WriteGeneration {
  /** Changes whenever the data may have changed; equal values mean nothing was written between. */
  current(): number;
  /**
   * False while changes may go unseen (a server database whose notifications are not
   * arriving, see server-writes.ts): nothing may be kept meanwhile. Always live when absent.
   */
  live?(): boolean;
}

/** Statements that only read: a single SELECT with no data-changing word anywhere in it. */
const READ_ONLY = /^\s*select\b/i;
const MAY_WRITE = /\b(insert|update|delete|merge|truncate|notify|pg_notify|nextval|setval|lock|copy|call|create|drop|alter|refresh|vacuum|analyze)\b/i;
/** Audit rows: an INSERT into the append-only audit trail and nothing else. */
const AUDIT_ONLY = /^\s*insert into "audit_events" \(/i;

/** Exact statement texts that only append rows no kept read depends on (see markAppendOnly). */
const appendOnly = new Set<string>();

/**
 * Declares a statement text (exactly as sent, placeholders included) as one that only appends
 * rows that no cached read depends on, such as the audit trail's one INSERT.
 */
export function markAppendOnly(text: string): void {
  appendOnly.add(text);
  verdicts.delete(text);
}

/**
 * writesMayChange's answers by text. The same few texts come back at every request (named
 * statements hold one string each), and the answer is regular expressions over the whole text:
 * 1.8% of a scan detail's main thread (docs/benchmarks/README.md, 2026-12-07 03:58). Bounded,
 * since texts with values written in them vary.
 */
const verdicts = new Map<string, boolean>();
const MAX_VERDICTS = 1024;

export function writesMayChange(text: string): boolean {
  let verdict = verdicts.get(text);
  if (verdict === undefined) {
    verdict = classify(text);
    if (verdicts.size >= MAX_VERDICTS) verdicts.clear();
    verdicts.set(text, verdict);
  }
  return verdict;
}

function classify(text: string): boolean {
  if (appendOnly.has(text)) return false;
  if (READ_ONLY.test(text)) return MAY_WRITE.test(text.replace(/^\s*select\b/i, ''));
  return !AUDIT_ONLY.test(text) || /\b(update|delete|select|with)\b/i.test(text.replace(AUDIT_ONLY, ''));
}

type Method = (...args: unknown[]) => unknown;

/**
 * `target` behind a Proxy: the methods named in `wrap` are replaced by what their entry makes of
 * the original, the others pass through. Every method is bound to `target` itself, since the
 * database clients keep private state that a Proxy as `this` cannot reach.
 */
export function wrapMethods<T extends object>(target: T, wrap: Record<string, (method: Method) => Method>): T {
  return new Proxy(target, {
    get(object, key) {
      const value: unknown = Reflect.get(object, key, object);
      if (typeof value !== 'function') return value;
      const method = (value as Method).bind(object);
      // Own entries only: `wrap`'s inherited toString or valueOf are no wrappers.
      return typeof key === 'string' && Object.hasOwn(wrap, key) ? wrap[key]!(method) : method;
    },
  });
}

/**
 * `client` whose statements move a write generation. Wrap the client everything else goes
 * through (Drizzle's and pg-boss's), and nothing may bypass it.
 */
export function trackWrites(client: PGlite): {
  client: PGlite;
  generation: WriteGeneration;
  /** Runs `fn` as a write, whatever its SQL (pg-boss's, say). */
  writing<T>(fn: () => Promise<T>): Promise<T>;
} {
  let generation = 0;
  async function around<T>(mayWrite: boolean, run: () => Promise<T>): Promise<T> {
    if (!mayWrite) return run();
    generation++;
    try {
      return await run();
    } finally {
      generation++;
    }
  }
  const write = (method: Method): Method => (...args) => around(true, () => method(...args) as Promise<unknown>);
  const tracked = wrapMethods(client, {
    query: (method) => (text, ...rest) => around(writesMayChange(text as string), () => method(text, ...rest) as Promise<unknown>),
    exec: write,
    transaction: write,
    execProtocol: write,
    execProtocolStream: write,
    execProtocolRaw: write,
  });
  return { client: tracked, generation: { current: () => generation }, writing: (fn) => around(true, fn) };
}
