import type { Sql } from 'postgres';
import { AppError } from '../lib/errors';

/** Seconds a client should wait before retrying when every connection is busy. */
const BUSY_RETRY_AFTER_SECONDS = '1';

/** What the pool is doing, for health and metrics. */
export interface PoolStats {
  max: number;
  inUse: number;
  waiting: number;
}

/**
 * A counting semaphore in front of postgres.js. postgres.js queues queries without limit when
 * every connection is busy; behind this gate a query waits at most `acquireTimeoutMs` for a
 * connection and then fails with 503 `database_busy`, so a saturated database sheds load
 * instead of piling up requests that will time out anyway. A burst larger than the pool queues
 * in order and is served as connections free up.
 */
export class PoolGate {
  private inUse = 0;
  private readonly queue: { grant: () => void; timer: ReturnType<typeof setTimeout> }[] = [];

  constructor(
    readonly max: number,
    private readonly acquireTimeoutMs: number,
  ) {}

  stats(): PoolStats {
    return { max: this.max, inUse: this.inUse, waiting: this.queue.length };
  }

  /** Resolves with a release function once a connection is free; rejects after the timeout. */
  acquire(): Promise<() => void> {
    if (this.inUse < this.max) {
      this.inUse++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const entry = {
        grant: () => {
          clearTimeout(entry.timer);
          resolve(this.releaser());
        },
        timer: setTimeout(() => {
          const at = this.queue.indexOf(entry);
          if (at >= 0) this.queue.splice(at, 1);
          reject(
            new AppError(
              503,
              'database_busy',
              'Every database connection is busy; retry shortly',
              undefined,
              {
                'retry-after': BUSY_RETRY_AFTER_SECONDS,
              },
            ),
          );
        }, this.acquireTimeoutMs),
      };
      this.queue.push(entry);
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.queue.shift();
      // The permit passes straight to the next waiter, so inUse stays the same.
      if (next) next.grant();
      else this.inUse--;
    };
  }

  /** Runs `fn` holding a permit. */
  async run<T>(fn: () => PromiseLike<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/**
 * A postgres.js client whose top-level queries and transactions pass through the gate. Queries
 * inside a transaction run on its reserved connection and are not gated again. Drizzle only
 * calls `unsafe` (awaiting it, sometimes after `.values()`) and `begin`.
 */
export function gatedClient(sql: Sql, gate: PoolGate): Sql {
  return new Proxy(sql, {
    get(target, prop, receiver) {
      if (prop === 'unsafe') {
        return (query: string, params?: unknown[], options?: { prepare?: boolean }) =>
          deferred(target.unsafe(query, params as never, prepared(params, options)), gate);
      }
      if (prop === 'begin') {
        return (...args: unknown[]) =>
          gate.run(() => (target.begin as (...a: unknown[]) => Promise<unknown>)(...args));
      }
      return Reflect.get(target, prop, receiver);
    },
  });
}

/**
 * Drizzle asks postgres.js for unnamed statements, which PostgreSQL parses and plans again on
 * every call: that doubled the database's CPU per list request. A query with parameters is one
 * statement with a stable text, so it is prepared once per connection and reused (postgres.js
 * re-prepares by itself when a schema change invalidates one). Queries without parameters (DDL,
 * multi-statement migrations) stay unnamed, as a prepared statement cannot hold several, and so
 * do those whose caller asks for it (statement texts of many shapes).
 */
function prepared(params: unknown[] | undefined, options: { prepare?: boolean } | undefined) {
  if (options?.prepare === false) return options;
  return params && params.length > 0 ? { ...options, prepare: true } : options;
}

/**
 * postgres.js queries are lazy: they are sent when first awaited. This thenable waits for a
 * permit before awaiting the real query, and keeps `.values()` chainable.
 */
function deferred<Q extends PromiseLike<unknown> & { values(): unknown }>(
  query: Q,
  gate: PoolGate,
) {
  const wrapper = {
    values() {
      query.values();
      return wrapper;
    },
    then<A, B>(onFulfilled?: (v: unknown) => A, onRejected?: (e: unknown) => B) {
      return gate.run(() => query).then(onFulfilled, onRejected);
    },
  };
  return wrapper;
}
