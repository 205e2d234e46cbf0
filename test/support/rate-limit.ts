import { expect } from 'bun:test';

interface Answer {
  status: number;
  json: any;
  headers: Headers;
}

/**
 * Exactly `budget` of `results` were admitted (201) and every other one refused: 429
 * `rate_limited`, a Retry-After within the window, RateLimit-Remaining 0. Returns the admitted.
 */
export function expectBudgetHeld<T extends Answer>(
  results: T[],
  budget: number,
  windowSeconds = 60,
): T[] {
  const admitted = results.filter((r) => r.status === 201);
  const limited = results.filter((r) => r.status === 429);
  expect(admitted.length).toBe(budget);
  expect(limited.length).toBe(results.length - budget);
  for (const r of limited) {
    expect(r.json.error.code).toBe('rate_limited');
    const retryAfter = Number(r.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(windowSeconds);
    expect(r.headers.get('ratelimit-remaining')).toBe('0');
  }
  return admitted;
}
