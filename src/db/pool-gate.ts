import type { Sql } from 'postgres';
import { AppError } from '../lib/errors';

/** Seconds a client should wait before retrying when every connection is busy. */
const BUSY_RETRY_AFTER_SECONDS = '1';

/** What the pool is doing, for health and metrics. */
export interface PoolStats {
  /** Connections the pool may open. */
  max: number;
  /** Connections with a query or transaction on them. */
  inUse: number;
  /** Queries and transactions waiting for room on a connection. */
  waiting: number;
  /** Queries sent and not yet answered, pipelined ones included. */
  inFlight: number;
}

/**
 * A counting semaphore in front of postgres.js. postgres.js queues queries without limit when
 * every connection is busy; behind this gate a query waits at most `acquireTimeoutMs` for room
 * on a connection and then fails with 503 `database_busy`, so a saturated database sheds load
 * instead of piling up requests that will time out anyway. A burst larger than the pool queues
 * in order and is served as room frees up.
 *
 * Each connection takes up to `depth` queries at once: postgres.js pipelines them (sends the next
 * before the previous one's answer is back), and PostgreSQL reads and answers several in one
 * wake-up. With one query per connection, a create cost PostgreSQL 0.48 ms of CPU and the server
 * 0.39 ms; with four, 0.35 and 0.28 (`bun bench/cpu.ts create`, 128 connections, pool of 20).
 * The price is that a pipelined query waits for those ahead of it on its connection rather than
 * for the first connection to free: postgres.js gives a new query to an idle connection when
 * there is one, otherwise to the next busy one, a slow statement's included. Its own limit per
 * connection (`max_pipeline`) stays at its default of 100: set lower, a transaction's BEGIN
 * sent to a connection at the limit never takes the connection (postgres.js skips its
 * `onexecute`), and the transaction fails. A transaction holds its connection alone, so it
 * takes a whole connection's room (`depth` permits) here.
 */
export class PoolGate {
  private used = 0;
  private running = 0;
  private readonly capacity: number;
  private readonly queue: {
    weight: number;
    grant: () => void;
    timer: ReturnType<typeof setTimeout>;
  }[] = [];

  constructor(
    readonly max: number,
    private readonly acquireTimeoutMs: number,
    readonly depth = 1,
  ) {
    this.capacity = max * depth;
  }

  stats(): PoolStats {
    return {
      max: this.max,
      inUse: Math.min(this.max, this.running),
      waiting: this.queue.length,
      inFlight: this.running,
    };
  }

  /**
   * Resolves with a release function once there is room for `weight` permits; rejects after the
   * timeout. Waiters are served in order: a transaction at the head is not overtaken by queries.
   */
  acquire(weight = 1): Promise<() => void> {
    if (this.queue.length === 0 && this.used + weight <= this.capacity) {
      this.take(weight);
      return Promise.resolve(this.releaser(weight));
    }
    return new Promise((resolve, reject) => {
      const entry = {
        weight,
        grant: () => {
          clearTimeout(entry.timer);
          this.take(weight);
          resolve(this.releaser(weight));
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
          // A heavy waiter that gave up may have been holding lighter ones back.
          this.grantWaiting();
        }, this.acquireTimeoutMs),
      };
      this.queue.push(entry);
    });
  }

  private take(weight: number): void {
    this.used += weight;
    this.running++;
  }

  private releaser(weight: number): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= weight;
      this.running--;
      this.grantWaiting();
    };
  }

  private grantWaiting(): void {
    while (this.queue.length > 0 && this.used + this.queue[0]!.weight <= this.capacity) {
      this.queue.shift()!.grant();
    }
  }

  /** Runs `fn` holding `weight` permits. */
  async run<T>(fn: () => PromiseLike<T>, weight = 1): Promise<T> {
    const release = await this.acquire(weight);
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
          gate.run(
            () => (target.begin as (...a: unknown[]) => Promise<unknown>)(...args),
            gate.depth,
          );
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
