import { describe, expect, test } from 'bun:test';
import { MemoryRateLimitStore } from '../src/plugins/rate-limit-memory';

describe('MemoryRateLimitStore', () => {
  test('counts made in one turn each see their own count', () => {
    const store = new MemoryRateLimitStore(100);
    const answers = Array.from({ length: 300 }, () => store.increment('k', 60_000, 1_000));
    expect(answers.map((a) => a.count)).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
  });

  test('a window starts at the first request, is not extended, and then resets', () => {
    const store = new MemoryRateLimitStore(100);
    const first = store.increment('k', 1_000, 10_000);
    expect(first).toMatchObject({ count: 1, start: 10_000 });
    expect(first.nextReset.getTime()).toBe(11_000);
    const later = store.increment('k', 1_000, 10_999);
    expect(later.count).toBe(2);
    expect(later.nextReset.getTime()).toBe(11_000);
    const next = store.increment('k', 1_000, 11_000);
    expect(next).toMatchObject({ count: 1, start: 11_000 });
    expect(next.nextReset.getTime()).toBe(12_000);
    // Keys count apart.
    expect(store.increment('other', 1_000, 11_000).count).toBe(1);
  });

  test('decrement never goes below zero; reset forgets one key or all', () => {
    const store = new MemoryRateLimitStore(100);
    store.increment('a', 60_000, 0);
    store.decrement('a');
    store.decrement('a');
    expect(store.increment('a', 60_000, 1).count).toBe(1);
    store.increment('b', 60_000, 1);
    store.reset('a');
    expect(store.increment('a', 60_000, 2).count).toBe(1);
    expect(store.increment('b', 60_000, 2).count).toBe(2);
    store.reset();
    expect(store.increment('b', 60_000, 3).count).toBe(1);
  });

  test('beyond its size it forgets the keys used longest ago', () => {
    const store = new MemoryRateLimitStore(10);
    store.increment('hot', 60_000, 0);
    for (let i = 0; i < 100; i++) {
      store.increment(`cold ${i}`, 60_000, 0);
      store.increment('hot', 60_000, 0);
    }
    expect(store.increment('hot', 60_000, 0).count).toBe(102);
    expect(store.increment('cold 0', 60_000, 0).count).toBe(1);
  });
});
