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
  const tracked = new Proxy(client, {
    get(target, key) {
      const value: unknown = Reflect.get(target, key, target);
      if (typeof value !== 'function') return value;
      const method = (value as (...args: unknown[]) => unknown).bind(target);
      switch (key) {
        case 'query':
          return (text: string, ...rest: unknown[]) => around(writesMayChange(text), () => method(text, ...rest) as Promise<unknown>);
        case 'exec':
        case 'transaction':
        case 'execProtocol':
        case 'execProtocolStream':
        case 'execProtocolRaw':
          return (...args: unknown[]) => around(true, () => method(...args) as Promise<unknown>);
        default:
          return method;
      }
    },
  });
  return { client: tracked, generation: { current: () => generation }, writing: (fn) => around(true, fn) };
}
