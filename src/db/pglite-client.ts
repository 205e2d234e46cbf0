import type { PGlite, QueryOptions } from '@electric-sql/pglite';
import { errors } from '../lib/errors';
import { currentRequestState } from '../lib/request-state';
import type { PoolStats } from './pool-gate';
import type { WireError, WireResults, WorkerReply, WorkerRequest } from './pglite-protocol';

/** A request without its id, which the client assigns (distributed over the union). */
type WithoutId<R> = R extends unknown ? Omit<R, 'id'> : never;
type Request = WithoutId<WorkerRequest>;

/** The part of PGlite's query options that crosses to the worker. */
type ClientQueryOptions = Pick<QueryOptions, 'rowMode' | 'parsers'>;

/** What a transaction's callback gets: queries on the transaction's session. */
export interface TransactionClient {
  query<T>(sql: string, params?: unknown[], options?: ClientQueryOptions): Promise<WireWith<T>>;
}

type WireWith<T> = Omit<WireResults, 'rows'> & { rows: T[] };

/**
 * Driver code of every query once the worker is gone: the database error mapping answers it
 * 503 database_unavailable, like a lost PostgreSQL connection.
 */
const WORKER_GONE_CODE = 'CONNECTION_CLOSED';

/**
 * The worker's entry point inside the compiled binary, where it is the build's second entry
 * point (see the `build` script), named relative to the build's `--root src`. Not a URL from
 * import.meta.url: in the binary that is the path of the source file on the build machine.
 */
const EMBEDDED_WORKER = './db/pglite-worker.ts';

function workerEntry(): string {
  return Bun.isStandaloneExecutable
    ? EMBEDDED_WORKER
    : new URL('./pglite-worker.ts', import.meta.url).href;
}

/**
 * The embedded database as the main thread sees it: the part of PGlite's interface drizzle's
 * PGlite driver and rawQuery use (`query` with `rowMode` and `parsers`, `transaction`), each
 * call a message to the worker that owns the PGlite instance (pglite-worker.ts). The main thread
 * stays free while a query runs, so probes and request timeouts keep answering.
 *
 * A transaction's statements carry its id and run on PGlite's one session inside it; queries
 * sent outside it meanwhile wait in the worker until it ends, as they would on PGlite itself.
 * A query cannot be cancelled once sent: PGlite has no way to interrupt one.
 */
export class PgliteWorkerClient {
  readonly #worker: Worker;
  readonly #pending = new Map<
    number,
    { resolve(result: unknown): void; reject(err: Error): void }
  >();
  #nextId = 1;
  #nextTx = 1;
  /** Queries outside any transaction, sent and not yet answered. */
  #outside = 0;
  /** Transactions begun (or waiting to begin) and not yet ended. */
  #transactions = 0;
  /** Set once the worker is closed or gone: every later call fails with it. */
  #gone: Error | null = null;

  private constructor(onGone: (err: Error) => void) {
    this.#worker = new Worker(workerEntry());
    this.#worker.onmessage = (event: MessageEvent<WorkerReply>) => {
      const reply = event.data;
      const waiter = this.#pending.get(reply.id);
      if (!waiter) return;
      this.#pending.delete(reply.id);
      if (reply.ok) waiter.resolve(reply.result);
      else waiter.reject(toError(reply.error));
    };
    this.#worker.onerror = (event: ErrorEvent) => {
      const err = this.#fail(`the embedded database's worker failed: ${event.message}`);
      if (err) onGone(err);
      this.#worker.terminate();
    };
    this.#worker.addEventListener('close', () => {
      const err = this.#fail("the embedded database's worker exited");
      if (err) onGone(err);
    });
  }

  /**
   * Starts the worker and opens (creating when absent) the database in `dataDir` there.
   * `onGone` hears, once, that the worker died while the database was open.
   */
  static async open(
    dataDir: string,
    onGone: (err: Error) => void,
  ): Promise<{ client: PgliteWorkerClient; vector: string }> {
    const client = new PgliteWorkerClient(onGone);
    try {
      const { vector } = (await client.#send({ type: 'open', dataDir })) as { vector: string };
      return { client, vector };
    } catch (err) {
      client.#fail('the embedded database did not open');
      client.#worker.terminate();
      throw err;
    }
  }

  /** One statement, like PGlite's `query`; `parsers` run here, on the text the worker kept. */
  query<T>(sql: string, params?: unknown[], options?: ClientQueryOptions): Promise<WireWith<T>> {
    return this.#query<T>(sql, params, options, undefined);
  }

  /** Runs `fn` in a transaction: committed when it resolves, rolled back when it throws. */
  async transaction<T>(fn: (tx: TransactionClient) => Promise<T>): Promise<T> {
    const tx = this.#nextTx++;
    this.#transactions++;
    try {
      await this.#send({ type: 'begin', tx });
      let result: T;
      try {
        result = await fn({
          query: (sql, params, options) => this.#query(sql, params, options, tx),
        });
      } catch (err) {
        // The callback's error is the one to report; a failed ROLLBACK leaves nothing to undo.
        await this.#send({ type: 'end', tx, commit: false }).catch(() => {});
        throw err;
      }
      await this.#send({ type: 'end', tx, commit: true });
      return result;
    } finally {
      this.#transactions--;
    }
  }

  /**
   * The one session as a pool of one: in use while anything runs, the rest waiting. A
   * transaction counts once from BEGIN to its end (it holds the session between statements).
   */
  stats(): PoolStats {
    const units = this.#outside + this.#transactions;
    return {
      max: 1,
      inUse: units > 0 ? 1 : 0,
      waiting: Math.max(0, units - 1),
      inFlight: this.#pending.size,
    };
  }

  /**
   * Closes PGlite (after the queries already sent; its files are flushed) and ends the worker.
   */
  async close(): Promise<void> {
    if (this.#gone) return;
    try {
      await this.#send({ type: 'close' });
    } finally {
      this.#fail('the embedded database is closed');
      this.#worker.terminate();
    }
  }

  /** This client as drizzle's PGlite driver types it; it calls only what is implemented here. */
  asPglite(): PGlite {
    return this as unknown as PGlite;
  }

  async #query<T>(
    sql: string,
    params: unknown[] = [],
    options: ClientQueryOptions = {},
    tx: number | undefined,
  ): Promise<WireWith<T>> {
    // A timed-out request sends no further statement, as the pool gate sees to for PostgreSQL:
    // a loop of statements stops between two, a transaction rolls back. One sent runs to its end.
    if (currentRequestState()?.signal?.aborted) throw errors.requestTimedOut();
    const parsers = options.parsers ?? {};
    if (tx === undefined) this.#outside++;
    let result: WireResults;
    try {
      result = (await this.#send({
        type: 'query',
        sql,
        params,
        rowMode: options.rowMode ?? 'object',
        textTypes: Object.keys(parsers).map(Number),
        tx,
      })) as WireResults;
    } finally {
      if (tx === undefined) this.#outside--;
    }
    applyParsers(result, options.rowMode ?? 'object', parsers);
    return result as WireWith<T>;
  }

  #send(request: Request): Promise<unknown> {
    if (this.#gone) return Promise.reject(this.#gone);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      try {
        this.#worker.postMessage({ ...request, id } as WorkerRequest);
      } catch (err) {
        // Parameters that cannot be cloned (a function, a symbol): this query fails alone.
        this.#pending.delete(id);
        reject(err as Error);
      }
    });
  }

  /** Marks the client gone and fails what is waiting; returns the error the first time only. */
  #fail(message: string): Error | null {
    if (this.#gone) return null;
    const err = Object.assign(new Error(message), { code: WORKER_GONE_CODE });
    this.#gone = err;
    for (const waiter of this.#pending.values()) waiter.reject(err);
    this.#pending.clear();
    return err;
  }
}

/** Decodes, with the caller's parsers, the columns the worker left as text. */
function applyParsers(
  result: WireResults,
  rowMode: 'array' | 'object',
  parsers: NonNullable<QueryOptions['parsers']>,
): void {
  const columns = result.fields.flatMap((field, index) => {
    const parse = parsers[field.dataTypeID];
    return parse
      ? [{ key: rowMode === 'array' ? index : field.name, parse, oid: field.dataTypeID }]
      : [];
  });
  if (columns.length === 0) return;
  for (const row of result.rows as Record<string | number, unknown>[]) {
    for (const { key, parse, oid } of columns) {
      const value = row[key];
      // PGlite never passes NULL to a parser.
      if (typeof value === 'string')
        row[key] = (parse as (v: string, oid: number) => unknown)(value, oid);
    }
  }
}

/** The worker's error as an Error here, with PostgreSQL's fields (`code` above all). */
function toError(wire: WireError): Error {
  const err = Object.assign(new Error(wire.message), wire.fields);
  err.name = wire.name;
  return err;
}
