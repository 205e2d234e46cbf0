import type { Sql } from 'postgres';
import { errors } from '../lib/errors';

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

/** What the gate knows of the request a statement belongs to. */
export interface GateScope {
  /** Whose share of the pool the statement counts against; work of no tenant shares one. */
  tenantId?: string;
  /**
   * Aborted at the request's deadline: the statement is cancelled if it is running, dropped if
   * it is waiting, and refused if it has not started.
   */
  signal?: AbortSignal;
}

/** Limits of the gate beyond the pool's size. */
export interface PoolGateOptions {
  /**
   * Most statements waiting at once; past it the tenant with the most waiting is refused
   * (429 while other tenants wait, 503 when it is alone). Unbounded when unset.
   */
  queueMax?: number;
  /** The scope of the statement being sent (the current request's); none by default. */
  scope?: () => GateScope | undefined;
  /** How long a tenant counts as active after its last statement ended (ms). */
  activeWindowMs?: number;
  /** Statements are pipelined only while they take this long or less on average (ms). */
  pipelineQuickMs?: number;
}

/** The share of work of no tenant (background jobs, key lookups, admin routes). */
const NO_TENANT = '';
/**
 * A tenant whose last statement ended less than this long ago still counts as active: it is
 * probably between two requests, and its next statement should find its share free.
 */
const ACTIVE_WINDOW_MS = 1000;
/** Idle lanes are forgotten at most this often (a sweep of the map). */
const SWEEP_MS = 50;
/**
 * Pipelining pays while statements are short (a create's round trip is most of its cost); behind
 * a statement of a hundred milliseconds it only makes the next one wait. Above this average
 * time a statement takes on its connection, every statement waits for a connection of its own.
 * Commit-bound creates at 128 connections averaged 1 to 36 ms on a loaded 2-core machine (so a
 * lower bound switched pipelining off mid-run and cost a quarter of the throughput); a
 * full-text search ranking 20,000 messages, hundreds.
 */
const PIPELINE_QUICK_MS = 100;
/** Weight of the newest statement in the running average of service times. */
const SERVICE_EWMA_WEIGHT = 0.05;

/** One tenant's statements: held, waiting (in order), when last served and last active. */
interface Lane {
  key: string;
  /** Permits held (a transaction holds a connection's worth). */
  held: number;
  /** Statements and transactions running, each on a connection. */
  running: number;
  waiting: Waiter[];
  servedAt: number;
  activeAt: number;
  /** Most running at once in the current window (from peakAt) and in the one before. */
  peak: number;
  previousPeak: number;
  peakAt: number;
}

interface Waiter {
  lane: Lane;
  weight: number;
  grant(): void;
  /** Leaves the queue (timed out, aborted or shed) with `error`. */
  fail(error: Error): void;
}

/**
 * A counting semaphore in front of postgres.js that shares the pool fairly between tenants.
 * postgres.js queues queries without limit when every connection is busy; behind this gate a
 * query waits at most `acquireTimeoutMs` for room on a connection and then fails with 503
 * `database_busy`, so a saturated database sheds load instead of piling up requests that will
 * time out anyway.
 *
 * A tenant alone (the only one with a statement in the last ACTIVE_WINDOW_MS; work of no tenant
 * does not count) may take every permit: each connection's `depth` of them. Once several are
 * active, each may hold at most its fair share of the connections (their number divided by the
 * active tenants, rounded up), one statement per connection: a flood of one tenant then leaves
 * idle connections for the others, whose statements start at once instead of queueing behind
 * it, on a connection or in the gate. A tenant that goes quiet for ACTIVE_WINDOW_MS gives its
 * share back. Waiting statements queue per tenant, in order; a freed connection goes to the
 * waiting tenant running the fewest (ties: the one served longest ago). The queue is bounded by
 * `queueMax`: past it, the tenant with the longest lane loses its newest waiter (429
 * `concurrency_limited`), or the newcomer is refused with 503 `database_busy` when it is the
 * only one waiting.
 *
 * Each connection takes up to `depth` queries at once: postgres.js pipelines them (sends the next
 * before the previous one's answer is back), and PostgreSQL reads and answers several in one
 * wake-up. With one query per connection, a create cost PostgreSQL 0.48 ms of CPU and the server
 * 0.39 ms; with four, 0.35 and 0.28 (`bun bench/cpu.ts create`, 128 connections, pool of 20).
 * The price is that a pipelined query waits for those ahead of it on its connection rather than
 * for the first connection to free: postgres.js gives a new query to an idle connection when
 * there is one, otherwise to the next busy one, a slow statement's included. So statements are
 * pipelined only for a tenant alone, and only while they are quick (PIPELINE_QUICK_MS): behind
 * a flood of slow searches, a newcomer would otherwise wait for every statement sent ahead of
 * it on its connection. Its own limit per connection (`max_pipeline`) stays at its default of
 * 100: set lower, a transaction's BEGIN sent to a connection at the limit never takes the
 * connection (postgres.js skips its `onexecute`), and the transaction fails. A transaction
 * holds its connection alone, so it takes a whole connection's room (`depth` permits) here,
 * and the lane it waits in is not overtaken by the others while it is the one to serve.
 */
export class PoolGate {
  private used = 0;
  private running = 0;
  private waitingCount = 0;
  private serial = 0;
  private sweptAt = 0;
  /** shareUnits() as last counted, and whether a change since calls for counting again. */
  private units = 0;
  private sharesDirty = false;
  /**
   * Running average of the time a statement takes on its connection, ms: its holding time
   * divided by how many shared its connection (pipelined ones wait for those ahead).
   */
  private serviceMs = 0;
  private readonly capacity: number;
  private readonly queueMax: number;
  private readonly scopeOf: () => GateScope | undefined;
  private readonly activeWindowMs: number;
  private readonly pipelineQuickMs: number;
  /** Lanes of tenants holding permits, waiting, or active within the window. */
  private readonly lanes = new Map<string, Lane>();
  /** Lanes with statements waiting. */
  private readonly queued = new Set<Lane>();

  constructor(
    readonly max: number,
    private readonly acquireTimeoutMs: number,
    readonly depth = 1,
    options: PoolGateOptions = {},
  ) {
    this.capacity = max * depth;
    this.queueMax = options.queueMax ?? Number.POSITIVE_INFINITY;
    this.scopeOf = options.scope ?? (() => undefined);
    // At least a sweep's interval: a lane is never swept in the turn that created it.
    this.activeWindowMs = Math.max(SWEEP_MS, options.activeWindowMs ?? ACTIVE_WINDOW_MS);
    this.pipelineQuickMs = options.pipelineQuickMs ?? PIPELINE_QUICK_MS;
  }

  stats(): PoolStats {
    return {
      max: this.max,
      inUse: Math.min(this.max, this.running),
      waiting: this.waitingCount,
      inFlight: this.running,
    };
  }

  /** The scope of the statement about to be sent. */
  scope(): GateScope | undefined {
    return this.scopeOf();
  }

  /**
   * Resolves with a release function once there is room for `weight` permits; rejects after the
   * timeout, when the queue is full, or when `scope`'s signal aborts first.
   */
  acquire(weight = 1, scope: GateScope | undefined = this.scopeOf()): Promise<() => void> {
    const signal = scope?.signal;
    if (signal?.aborted) return Promise.reject(errors.requestTimedOut());
    const lane = this.laneOf(scope?.tenantId ?? NO_TENANT);
    if (this.waitingCount === 0 && this.fits(lane, weight)) {
      this.take(lane, weight);
      return Promise.resolve(this.releaser(lane, weight));
    }
    if (this.waitingCount >= this.queueMax) {
      const refusal = this.shed(lane);
      if (refusal) return Promise.reject(refusal);
    }
    const granted = new Promise<() => void>((resolve, reject) => {
      const leave = (error: Error) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const at = lane.waiting.indexOf(waiter);
        if (at < 0) return;
        lane.waiting.splice(at, 1);
        this.waitingCount--;
        if (lane.waiting.length === 0) this.queued.delete(lane);
        reject(error);
        // A heavy waiter that gave up may have been holding lighter ones back.
        this.grantWaiting();
      };
      const onAbort = () => leave(errors.requestTimedOut());
      const waiter: Waiter = {
        lane,
        weight,
        grant: () => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          this.take(lane, weight);
          resolve(this.releaser(lane, weight));
        },
        fail: leave,
      };
      const timer = setTimeout(() => leave(errors.databaseBusy()), this.acquireTimeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      lane.waiting.push(waiter);
      this.waitingCount++;
      this.queued.add(lane);
    });
    // A newcomer below its share may go at once although others wait (at their share).
    this.grantWaiting();
    return granted;
  }

  private laneOf(key: string): Lane {
    let lane = this.lanes.get(key);
    if (!lane) {
      // Active from now: a sweep before its first statement is granted must not drop it.
      const now = performance.now();
      lane = {
        key,
        held: 0,
        running: 0,
        waiting: [],
        servedAt: 0,
        activeAt: now,
        peak: 0,
        previousPeak: 0,
        peakAt: now,
      };
      this.lanes.set(key, lane);
      this.sharesDirty = true;
    }
    return lane;
  }

  /**
   * How many ways the connections are shared: one for each tenant active within the window that
   * wants more than one connection at once (now or at its peak in the window), and one for all
   * the others together. Many tenants with a request now and then thus leave a flood half the
   * pool rather than a sliver, and share the other half. Work of no tenant is not counted.
   */
  private shareUnits(): number {
    const now = performance.now();
    if (!this.sharesDirty && now - this.sweptAt < SWEEP_MS) return this.units;
    this.sweptAt = now;
    this.sharesDirty = false;
    let heavy = 0;
    let light = 0;
    for (const [key, lane] of this.lanes) {
      const idle = lane.held === 0 && lane.waiting.length === 0;
      if (idle && now - lane.activeAt > this.activeWindowMs) {
        this.lanes.delete(key);
        continue;
      }
      if (key === NO_TENANT) continue;
      if (Math.max(this.peakOf(lane, now), lane.running + lane.waiting.length) > 1) heavy++;
      else light++;
    }
    this.units = heavy + (light > 0 ? 1 : 0);
    return this.units;
  }

  /** Most statements `lane` ran at once in this window and the one before. */
  private peakOf(lane: Lane, now: number): number {
    if (now - lane.peakAt >= this.activeWindowMs) {
      lane.previousPeak = now - lane.peakAt < 2 * this.activeWindowMs ? lane.peak : 0;
      lane.peak = lane.running;
      lane.peakAt = now;
    }
    return Math.max(lane.peak, lane.previousPeak);
  }

  /** Whether `lane` may take `weight` permits now. */
  private fits(lane: Lane, weight: number): boolean {
    if (this.used + weight > this.capacity) return false;
    const units = this.shareUnits();
    if (units > 1) {
      // Shared: a connection of its own, within the tenant's fair share of them.
      if (this.running >= this.max) return false;
      return lane.key === NO_TENANT || lane.running < Math.ceil(this.max / units);
    }
    // Alone: every permit, pipelined while statements are quick.
    return this.running < this.max || this.serviceMs <= this.pipelineQuickMs;
  }

  /**
   * Makes room in a full queue for a statement of `lane`: the longest lane gives up its newest
   * waiter. Returns the error to refuse the newcomer with when its own lane is the longest.
   */
  private shed(lane: Lane): Error | null {
    let longest = lane;
    for (const other of this.queued) {
      if (other.waiting.length > longest.waiting.length) longest = other;
    }
    if (longest === lane) {
      const alone = this.queued.size === 0 || (this.queued.size === 1 && this.queued.has(lane));
      return alone ? errors.databaseBusy() : errors.concurrencyLimited();
    }
    longest.waiting[longest.waiting.length - 1]!.fail(errors.concurrencyLimited());
    return null;
  }

  private take(lane: Lane, weight: number): void {
    this.used += weight;
    this.running++;
    lane.held += weight;
    lane.running++;
    lane.servedAt = ++this.serial;
    // A tenant that wants a second connection at once gets a share of its own.
    if (lane.running > this.peakOf(lane, performance.now()) && lane.running === 2) {
      this.sharesDirty = true;
    }
    lane.peak = Math.max(lane.peak, lane.running);
  }

  private releaser(lane: Lane, weight: number): () => void {
    let released = false;
    const grantedAt = performance.now();
    return () => {
      if (released) return;
      released = true;
      const now = performance.now();
      const service = ((now - grantedAt) * Math.min(this.running, this.max)) / this.running;
      this.serviceMs += (service - this.serviceMs) * SERVICE_EWMA_WEIGHT;
      this.used -= weight;
      this.running--;
      lane.held -= weight;
      lane.running--;
      lane.activeAt = now;
      this.grantWaiting();
    };
  }

  /** The waiting tenant to serve next: the fewest running, then the longest unserved. */
  private next(): Lane | undefined {
    let best: Lane | undefined;
    for (const lane of this.queued) {
      if (
        !best ||
        lane.running < best.running ||
        (lane.running === best.running && lane.servedAt < best.servedAt)
      ) {
        best = lane;
      }
    }
    return best;
  }

  private grantWaiting(): void {
    for (let lane = this.next(); lane; lane = this.next()) {
      const head = lane.waiting[0]!;
      if (!this.fits(lane, head.weight)) return;
      lane.waiting.shift();
      this.waitingCount--;
      if (lane.waiting.length === 0) this.queued.delete(lane);
      head.grant();
    }
  }

  /**
   * Runs `fn` holding `weight` permits. When `scope`'s signal aborts while `fn` runs, `onAbort`
   * is called (to cancel the statement) and `fn`'s failure becomes 503 `request_timeout`.
   */
  async run<T>(
    fn: () => PromiseLike<T>,
    weight = 1,
    scope: GateScope | undefined = this.scopeOf(),
    onAbort?: () => void,
  ): Promise<T> {
    const release = await this.acquire(weight, scope);
    try {
      return await untilAborted(fn, scope?.signal, onAbort);
    } finally {
      release();
    }
  }
}

/** Runs `fn`; if `signal` aborts meanwhile, calls `onAbort` and reports a failure as a timeout. */
async function untilAborted<T>(
  fn: () => PromiseLike<T>,
  signal: AbortSignal | undefined,
  onAbort: (() => void) | undefined,
): Promise<T> {
  if (!signal) return await fn();
  if (onAbort) signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await fn();
  } catch (err) {
    if (!signal.aborted) throw err;
    throw errors.requestTimedOut({ cause: err });
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
  }
}

/** A postgres.js query as the gate handles it: lazy, thenable, cancellable. */
type PendingQuery = PromiseLike<unknown> & { values(): unknown };

/**
 * Cancels a postgres.js query: removed from the queue if not sent yet, otherwise a cancel
 * request for its backend (sent when it becomes the connection's active query, if it is
 * pipelined behind others). `Query.cancel()` drops the promise of that request, and a failed
 * one (the server gone) would be an unhandled rejection, which ends the process; so the
 * canceller is called here and its failure ignored: the statement timeout remains.
 */
function cancelQuery(query: PendingQuery): void {
  const q = query as unknown as { canceller?: ((q: unknown) => Promise<void>) | null };
  const canceller = q.canceller;
  if (typeof canceller !== 'function') return;
  q.canceller = null;
  canceller(query).catch(() => {});
}

/**
 * A postgres.js client whose top-level queries and transactions pass through the gate. Queries
 * inside a transaction run on its reserved connection and are not gated again, but they are
 * checked against the request's deadline like the others. Drizzle only calls `unsafe`
 * (awaiting it, sometimes after `.values()`), `begin` and, in a transaction, `savepoint`.
 */
export function gatedClient(sql: Sql, gate: PoolGate): Sql {
  return new Proxy(sql, {
    get(target, prop, receiver) {
      if (prop === 'unsafe') {
        return (query: string, params?: unknown[], options?: { prepare?: boolean }) =>
          deferred(target.unsafe(query, params as never, prepared(params, options)), (q) =>
            gate.run(
              () => q,
              1,
              gate.scope(),
              () => cancelQuery(q),
            ),
          );
      }
      if (prop === 'begin') {
        return (...args: unknown[]) => {
          const scope = gate.scope();
          return gate.run(
            () =>
              (target.begin as (...a: unknown[]) => Promise<unknown>)(
                ...withinDeadline(args, scope),
              ),
            gate.depth,
            scope,
          );
        };
      }
      return Reflect.get(target, prop, receiver);
    },
  });
}

/**
 * The arguments of `begin` or `savepoint` (options, then the callback) with the callback's
 * client checked against the deadline of `scope`.
 */
function withinDeadline(args: unknown[], scope: GateScope | undefined): unknown[] {
  const signal = scope?.signal;
  if (!signal) return args;
  const fn = args[args.length - 1] as (client: Sql) => unknown;
  return [...args.slice(0, -1), (client: Sql) => fn(deadlineClient(client, signal))];
}

/**
 * A transaction's client whose every statement is refused once `signal` has aborted, and
 * cancelled if it is running then: a timed-out transaction stops at its next statement and
 * rolls back.
 */
function deadlineClient(sql: Sql, signal: AbortSignal): Sql {
  return new Proxy(sql, {
    get(target, prop, receiver) {
      if (prop === 'unsafe') {
        return (query: string, params?: unknown[], options?: { prepare?: boolean }) =>
          // Options as the caller gave them: statements in a transaction were never prepared
          // on the caller's behalf.
          deferred(target.unsafe(query, params as never, options), (q) =>
            signal.aborted
              ? Promise.reject(errors.requestTimedOut())
              : untilAborted(
                  () => q,
                  signal,
                  () => cancelQuery(q),
                ),
          );
      }
      if (prop === 'savepoint') {
        return (...args: unknown[]) =>
          (Reflect.get(target, 'savepoint') as (...a: unknown[]) => Promise<unknown>)(
            ...withinDeadline(args, { signal }),
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
 * postgres.js queries are lazy: they are sent when first awaited. This thenable sends the query
 * through `send` (which waits for a permit, or checks the deadline) when it is awaited, and
 * keeps `.values()` chainable.
 */
function deferred<Q extends PendingQuery>(query: Q, send: (query: Q) => Promise<unknown>) {
  const wrapper = {
    values() {
      query.values();
      return wrapper;
    },
    then<A, B>(onFulfilled?: (v: unknown) => A, onRejected?: (e: unknown) => B) {
      return send(query).then(onFulfilled, onRejected);
    },
  };
  return wrapper;
}
