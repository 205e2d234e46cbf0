import QuickLRU from '@alloc/quick-lru';
import type { Context as RateLimitStore, Options as RateLimitOptions } from 'elysia-rate-limit';

interface Window {
  count: number;
  /** When the window started (ms since the epoch): at its key's first request. */
  start: number;
  nextReset: Date;
}

/**
 * elysia-rate-limit's store interface in process, with the same windows as its DefaultContext
 * (a window starts at a key's first request, is never extended, and resets when it ends; the
 * least recently used keys are forgotten beyond `maxKeys`). It answers synchronously, and each
 * answer is a copy: DefaultContext resolves every caller with the key's live counter, so
 * requests that counted in the same turn of the event loop all read the last count, and a
 * burst that crossed the limit was refused whole rather than only past the limit.
 */
export class MemoryRateLimitStore implements RateLimitStore {
  private readonly windows: QuickLRU<string, Window>;
  private windowMs = 60_000;

  constructor(maxKeys: number) {
    this.windows = new QuickLRU({ maxSize: maxKeys });
  }

  init(options: Omit<RateLimitOptions, 'context'>): void {
    if (typeof options.duration === 'number') this.windowMs = options.duration;
  }

  increment(key: string, windowMs = this.windowMs, now = Date.now()): Window {
    let window = this.windows.get(key);
    if (!window || window.nextReset.getTime() <= now) {
      window = { count: 0, start: now, nextReset: new Date(now + windowMs) };
      this.windows.set(key, window);
    }
    window.count++;
    return { count: window.count, start: window.start, nextReset: window.nextReset };
  }

  decrement(key: string): void {
    const window = this.windows.get(key);
    if (window && window.count > 0) window.count--;
  }

  reset(key?: string): void {
    if (key === undefined) this.windows.clear();
    else this.windows.delete(key);
  }

  kill(): void {
    this.windows.clear();
  }
}
