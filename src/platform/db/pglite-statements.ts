/**
 * Named (prepared) statements on PGlite. drizzle-orm's PGlite driver sends every statement
 * unnamed, `.prepare(name)` or not, so PGlite parsed, analysed and planned a list page anew on
 * each request, on the API's own thread: most of a page's cost at a few hundred rows. This
 * client keeps a server-side named statement for each statement text it sees again (bounded,
 * least recently used first out), and runs it with Bind/Execute only, so PostgreSQL's plan cache
 * keeps its plan as it does for the named statements of the PostgreSQL driver.
 *
 * Only statements outside a transaction are named here: a transaction's statements go through
 * PGlite's own transaction object, unchanged.
 */
import { parse, protocol, type PGlite, type QueryOptions, type Results } from '@electric-sql/pglite';

type BackendMessage = Awaited<ReturnType<PGlite['execProtocolStream']>>[number];

/** The parts of PGlite's instance this uses beyond its documented query API. */
interface PGliteInternals {
  _checkReady(): Promise<void>;
  _runExclusiveTransaction<T>(fn: () => Promise<T>): Promise<T>;
  _runExclusiveQuery<T>(fn: () => Promise<T>): Promise<T>;
}

interface Statement {
  name: string | null;
  /** Parameter type OIDs, as PostgreSQL inferred them when the statement was parsed. */
  types: number[];
  /** Times seen: a text is named from its second use, so one-off statements cost nothing. */
  uses: number;
}

/** Errors after which a named statement is dropped and the text run unnamed. */
const STALE_STATEMENT = new Set([
  '0A000', // cached plan must not change result type (a table changed under it)
  '26000', // prepared statement does not exist
]);

/** Statements longer than this, or with more parameters, are never named. */
const MAX_TEXT = 16_384;
const MAX_PARAMS = 256;

/** Statement names are unique per process: several clients may wrap one PGlite instance. */
let counter = 0;

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

interface NamedStatementOptions {
  /** Named statements kept at most; the least recently used is closed beyond it. */
  max?: number;
}

/**
 * `client` with a `query` that runs repeated statement texts as named statements. Everything
 * else (transactions, exec, listen) is the client's own.
 */
export function withNamedStatements(client: PGlite, opts: NamedStatementOptions = {}): PGlite {
  const max = opts.max ?? 500;
  const internals = client as unknown as PGliteInternals;
  // These internals are not PGlite's public API: a release without them gets the plain client
  // (correct, only slower) instead of a broken one. pglite-statements.test.ts pins that they work.
  if (!(['_checkReady', '_runExclusiveTransaction', '_runExclusiveQuery'] as const).every((k) => typeof internals[k] === 'function')) return client;
  const statements = new Map<string, Statement>();
  const toClose: string[] = [];

  const exec = (message: Uint8Array) => client.execProtocolStream(message, { syncToFs: false });

  function remember(text: string, statement: Statement): void {
    // Map order is recency: delete and set moves the text to the end.
    statements.delete(text);
    statements.set(text, statement);
    while (statements.size > max) {
      const [oldest, evicted] = statements.entries().next().value as [string, Statement];
      statements.delete(oldest);
      if (evicted.name) toClose.push(evicted.name);
    }
  }

  async function runNamed<T>(text: string, statement: Statement, params: unknown[], options?: QueryOptions): Promise<Results<T>> {
    const messages: BackendMessage[] = [];
    const prelude: Uint8Array[] = [];
    for (const name of toClose.splice(0)) prelude.push(protocol.serialize.close({ type: 'S', name }));
    if (statement.name === null) {
      const name = `pglite_s${++counter}`;
      await exec(concat([...prelude, protocol.serialize.parse({ name, text, types: options?.paramTypes }), protocol.serialize.describe({ type: 'S', name }), protocol.serialize.sync()]))
        .then((described) => {
          statement.types = parse.parseDescribeStatementResults(described);
          statement.name = name;
        })
        .catch((err: unknown) => {
          // An unparseable text: forget it, so each use fails alike (the unnamed way).
          statements.delete(text);
          throw err;
        });
      prelude.length = 0;
    }
    const values = params.map((value, i) => {
      if (value === null || value === undefined) return null;
      const type = statement.types[i]!;
      const serializer = options?.serializers?.[type] ?? client.serializers[type];
      // PGlite's own fallback for a type without a serializer (its query() does the same).
      return serializer ? serializer(value) : (value as { toString(): string }).toString();
    });
    try {
      messages.push(
        ...(await exec(
          concat([
            ...prelude,
            protocol.serialize.bind({ statement: statement.name!, values }),
            protocol.serialize.describe({ type: 'P' }),
            protocol.serialize.execute({}),
            protocol.serialize.sync(),
          ]),
        )),
      );
    } catch (err) {
      // The buffer ended with Sync, so the session is ready for the next statement again.
      if (err instanceof Error) Object.assign(err, { query: text, params, queryOptions: options });
      throw err;
    }
    await client.syncToFs();
    return parse.parseResults(messages, client.parsers, options)[0] as Results<T>;
  }

  async function query<T>(text: string, params: unknown[] = [], options?: QueryOptions): Promise<Results<T>> {
    // Multi-row INSERTs (a group of audit rows) have a text per row count: kept, each would hold
    // its plan in the engine's memory for one use in a while.
    if (options?.blob || text.length > MAX_TEXT || params.length > MAX_PARAMS) return client.query<T>(text, params, options);
    const known = statements.get(text);
    if (!known) {
      remember(text, { name: null, types: [], uses: 1 });
      return client.query<T>(text, params, options);
    }
    known.uses++;
    remember(text, known);
    await internals._checkReady();
    try {
      return await internals._runExclusiveTransaction(() => internals._runExclusiveQuery(() => runNamed<T>(text, known, params, options)));
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (typeof code !== 'string' || !STALE_STATEMENT.has(code) || known.name === null) throw err;
      statements.delete(text);
      toClose.push(known.name);
      return client.query<T>(text, params, options);
    }
  }

  return new Proxy(client, {
    get(target, key) {
      if (key === 'query') return query;
      const value: unknown = Reflect.get(target, key, target);
      // PGlite's methods use private fields: they must run on the instance, not the proxy.
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}
