import type { Context as RateLimitStore, Options as RateLimitOptions } from 'elysia-rate-limit';
import Redis from 'ioredis';
import type { Logger } from '../logger';

/**
 * Namespace of the counters, so the Redis can be shared with other data (added here rather than
 * with ioredis's keyPrefix option, which SCAN's pattern does not get).
 */
const KEY_PREFIX = 'threadstore:rl:';
/** Longest pause between reconnection attempts: recovery is noticed within about a second. */
const MAX_RECONNECT_DELAY_MS = 1000;
/** How long one connection attempt may take before it is given up and retried. */
const CONNECT_TIMEOUT_MS = 2000;
/** Keys deleted per SCAN page by reset() without a key. */
const RESET_SCAN_COUNT = 500;

/**
 * Counts a request and returns [count, milliseconds left in the window], in one step on the
 * server so that concurrent requests of every instance see distinct counts. The expiry is set
 * only when the key has none, so a window starts at a key's first request and is never
 * extended, exactly like the in-process store (rate-limit-memory.ts). PTTL < 0 also heals a
 * key that lost its expiry (written by hand, say), which would otherwise never reset.
 */
const INCREMENT_LUA = `
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
`;

/** Gives back one count, never below zero and never to a window that has already ended. */
const DECREMENT_LUA = `
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count > 0 then redis.call('DECR', KEYS[1]) end
return 0
`;

/** Why the store last failed, for the health report. */
export interface StoreFailure {
  at: string;
  message: string;
}

type ScriptedRedis = Redis & {
  rateLimitIncrement(key: string, windowMs: number): Promise<[number, number]>;
  rateLimitDecrement(key: string): Promise<number>;
};

export interface RedisStoreOptions {
  /** A call that has not answered within this is rejected (REDIS_TIMEOUT_MS). */
  timeoutMs: number;
  /** Where losing and regaining the connection is reported (once per change, not per retry). */
  logger?: Logger;
}

/**
 * elysia-rate-limit's store interface over Redis (ioredis), so every instance of the fleet
 * draws on the same budgets. It never queues or waits for a lost connection: while Redis is
 * down or slow every call fails within `timeoutMs`, and the caller decides what a failure
 * means (see RATE_LIMIT_ON_STORE_ERROR). The client reconnects in the background.
 */
export class RedisRateLimitStore implements RateLimitStore {
  readonly client: ScriptedRedis;
  private readonly timeoutMs: number;
  private windowMs = 60_000;
  private lastFailure: StoreFailure | null = null;
  /** Whether the last call failed; cleared by the next that succeeds. */
  private failing = false;
  private closed = false;

  constructor(url: string, { timeoutMs, logger }: RedisStoreOptions) {
    this.timeoutMs = timeoutMs;
    const client = new Redis(url, {
      // Without these a call made while disconnected waits for the connection, and a request
      // with it: the point is to answer at once and let the policy decide.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: timeoutMs,
      connectTimeout: Math.max(CONNECT_TIMEOUT_MS, timeoutMs),
      retryStrategy: (attempt) => Math.min(attempt * 50, MAX_RECONNECT_DELAY_MS),
    });
    client.defineCommand('rateLimitIncrement', { numberOfKeys: 1, lua: INCREMENT_LUA });
    client.defineCommand('rateLimitDecrement', { numberOfKeys: 1, lua: DECREMENT_LUA });
    // ioredis emits 'error' on every failed reconnection (unheard, it prints each to stderr):
    // only the change from up to down is logged, and back.
    let up: boolean | null = null;
    client.on('error', (err: Error) => {
      this.noteFailure(err);
      if (up === false) return;
      up = false;
      logger?.warn({ err }, 'Redis unreachable; reconnecting in the background');
    });
    client.on('ready', () => {
      this.failing = false;
      if (up === false) logger?.info('Redis reachable again');
      up = true;
    });
    this.client = client as ScriptedRedis;
  }

  init(options: Omit<RateLimitOptions, 'context'>): void {
    // A duration computed per request is passed to increment() instead.
    if (typeof options.duration === 'number') this.windowMs = options.duration;
  }

  async increment(key: string, duration = this.windowMs, requestTime = Date.now()) {
    const [count, ttl] = await this.call(() =>
      this.client.rateLimitIncrement(KEY_PREFIX + key, duration),
    );
    const nextReset = new Date(requestTime + Number(ttl));
    return { count: Number(count), nextReset, start: nextReset.getTime() - duration };
  }

  async decrement(key: string): Promise<void> {
    await this.call(() => this.client.rateLimitDecrement(KEY_PREFIX + key));
  }

  /** Forgets one key's window, or every counter of threadstore without a key. */
  async reset(key?: string): Promise<void> {
    if (key !== undefined) {
      await this.call(() => this.client.del(KEY_PREFIX + key));
      return;
    }
    let cursor = '0';
    do {
      const [next, keys] = await this.call(() =>
        this.client.scan(cursor, 'MATCH', `${KEY_PREFIX}*`, 'COUNT', RESET_SCAN_COUNT),
      );
      if (keys.length > 0) await this.call(() => this.client.del(...keys));
      cursor = next;
    } while (cursor !== '0');
  }

  /** Closes the connection (QUIT, or a plain disconnect when Redis is not answering). */
  async kill(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.client.status === 'ready') {
      try {
        await this.call(() => this.client.quit());
        return;
      } catch {
        // Not answering: drop the connection instead.
      }
    }
    // Also cancels a pending reconnection attempt.
    this.client.disconnect();
  }

  /** Waits until the connection is ready, up to `ms`; false when it is not. */
  async ready(ms: number): Promise<boolean> {
    if (this.client.status === 'ready') return true;
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.client.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), ms);
      this.client.once('ready', onReady);
    });
  }

  /** The store as the health report shows it: failing since the last call that failed. */
  state(): { ok: boolean; connection: string; lastFailure: StoreFailure | null } {
    return {
      ok: !this.failing && this.client.status === 'ready',
      connection: this.client.status,
      lastFailure: this.lastFailure,
    };
  }

  /**
   * Runs one call with a deadline of its own: commandTimeout covers a call Redis does not answer,
   * but not the script's reload after a NOSCRIPT, which is a second round trip.
   */
  private async call<T>(run: () => Promise<T>): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const result = await Promise.race([
        run(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                // The code says what happened in the log, which shows no error messages.
                Object.assign(new Error(`Redis did not answer within ${this.timeoutMs} ms`), {
                  code: 'REDIS_TIMEOUT',
                }),
              ),
            this.timeoutMs,
          );
        }),
      ]);
      this.failing = false;
      return result;
    } catch (err) {
      this.noteFailure(err);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private noteFailure(err: unknown) {
    this.failing = true;
    this.lastFailure = {
      at: new Date().toISOString(),
      message: err instanceof Error ? err.message : String(err),
    };
  }
}
