import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import Redis from 'ioredis';
import { ConfigError, loadConfig } from '../src/config';
import { RedisRateLimitStore } from '../src/plugins/rate-limit-redis';
import { ADMIN_KEY, buildTestApp, type TestApp } from './support/app';
import { expectBudgetHeld } from './support/rate-limit';
import { findRedisServer, REDIS_INSTALL, type RedisServer, startRedis } from '../harness/redis';
import { requireOrSkip } from './support/requires';

const describeRedis = requireOrSkip('Redis', findRedisServer() !== null, REDIS_INSTALL, {
  missing: 'redis-server is not on PATH',
});

const message = { conversation_id: 'rl-redis', role: 'user', content: 'x' };
const TIMEOUT_MS = 200;
/** What a request may take on top of REDIS_TIMEOUT_MS: its own work, on a busy test machine. */
const MARGIN_MS = 800;

const apps: TestApp[] = [];
async function appWith(env: Record<string, string>) {
  const app = await buildTestApp(env);
  apps.push(app);
  return app;
}
afterAll(async () => {
  for (const app of apps) await app.close();
});

const write = (t: TestApp, key: string) => t.call('POST', '/v1/messages', { key, body: message });

/** Calls in parallel, each timed from its own start. */
async function timed<T>(n: number, call: (i: number) => Promise<T>) {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const started = performance.now();
      const res = await call(i);
      return { res, ms: performance.now() - started };
    }),
  );
}

function storeErrors(metricsText: string): number {
  const m = /^threadstore_rate_limit_store_errors_total (\d+)/m.exec(metricsText);
  if (!m) throw new Error('threadstore_rate_limit_store_errors_total missing from /metrics');
  return Number(m[1]);
}

const storeWarnings = (t: TestApp) =>
  t.logs.lines.filter(
    (l) => l.level === 'warn' && String(l.msg).startsWith('rate-limit store failed'),
  );

describe('configuration', () => {
  test('Redis is off by default, with a 200 ms timeout and requests allowed on store errors', () => {
    const config = loadConfig({});
    expect(config.REDIS_URL).toBeUndefined();
    expect(config.REDIS_TIMEOUT_MS).toBe(200);
    expect(config.RATE_LIMIT_ON_STORE_ERROR).toBe('allow');
  });

  test('accepts redis:// and rediss:// URLs, and rejects others and unknown policies', () => {
    expect(loadConfig({ REDIS_URL: 'rediss://:pw@cache:6380/2' }).REDIS_URL).toBe(
      'rediss://:pw@cache:6380/2',
    );
    expect(() =>
      loadConfig({ REDIS_URL: 'http://cache:6379', RATE_LIMIT_ON_STORE_ERROR: 'maybe' }),
    ).toThrow(ConfigError);
    try {
      loadConfig({ REDIS_URL: 'http://cache:6379', RATE_LIMIT_ON_STORE_ERROR: 'maybe' });
    } catch (err) {
      expect((err as Error).message).toContain('REDIS_URL');
      expect((err as Error).message).toContain('RATE_LIMIT_ON_STORE_ERROR');
    }
  });
});

describeRedis('rate limits in Redis', () => {
  let redis: RedisServer;
  let inspect: Redis;
  beforeAll(async () => {
    redis = await startRedis();
    inspect = new Redis(redis.url);
  });
  afterAll(async () => {
    inspect?.disconnect();
    await redis?.close();
  });

  describe('budgets hold across instances', () => {
    test('300 concurrent writes over three instances against a budget of 100 admit exactly 100', async () => {
      const env = { REDIS_URL: redis.url, RATE_LIMIT_WRITE_PER_MINUTE: '100' };
      const fleet = [await appWith(env), await appWith(env), await appWith(env)];
      const { id, api_key } = await fleet[0]!.tenant();
      const results = await Promise.all(
        Array.from({ length: 300 }, (_, i) => write(fleet[i % 3]!, api_key)),
      );
      expectBudgetHeld(results, 100);
      // Every request was counted once, in one shared counter.
      expect(await inspect.get(`threadstore:rl:write:t:${id}`)).toBe('300');
      const list = await fleet[1]!.call('GET', '/v1/messages?limit=200', { key: api_key });
      expect(list.json.messages.length).toBe(100);
    });

    test('without REDIS_URL each instance still counts on its own', async () => {
      const env = { RATE_LIMIT_WRITE_PER_MINUTE: '5' };
      const fleet = [await appWith(env), await appWith(env), await appWith(env)];
      expect(fleet[0]!.deps.rateLimitStore).toBeNull();
      const { api_key } = await fleet[0]!.tenant();
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) => write(fleet[i % 3]!, api_key)),
      );
      expect(results.filter((r) => r.status === 201).length).toBe(15);
    });
  });

  describe('the store', () => {
    test('decrement never goes below zero; reset forgets one key, or only threadstore’s keys', async () => {
      const store = new RedisRateLimitStore(redis.url, { timeoutMs: 1000 });
      try {
        expect(await store.ready(5000)).toBe(true);
        const key = `test:${crypto.randomUUID()}`;
        expect((await store.increment(key, 10_000)).count).toBe(1);
        expect((await store.increment(key, 10_000)).count).toBe(2);
        for (let i = 0; i < 3; i++) await store.decrement(key);
        expect(await inspect.get(`threadstore:rl:${key}`)).toBe('0');
        expect((await store.increment(key, 10_000)).count).toBe(1);
        await store.reset(key);
        expect(await inspect.exists(`threadstore:rl:${key}`)).toBe(0);
        await store.increment(key, 10_000);
        await inspect.set('not-threadstore', '1');
        await store.reset();
        expect(await inspect.keys('threadstore:rl:*')).toEqual([]);
        expect(await inspect.get('not-threadstore')).toBe('1');
      } finally {
        await store.kill();
      }
    });
  });

  describe('windows', () => {
    test('a window starts at a key’s first request, is not extended, and then resets', async () => {
      const env = {
        REDIS_URL: redis.url,
        RATE_LIMIT_WRITE_PER_MINUTE: '2',
        RATE_LIMIT_WINDOW_MS: '2000',
      };
      const [a, b] = [await appWith(env), await appWith(env)];
      const { id, api_key } = await a.tenant();
      const first = await write(a, api_key);
      expect(first.status).toBe(201);
      expect(first.headers.get('ratelimit-limit')).toBe('2');
      expect(first.headers.get('ratelimit-remaining')).toBe('1');
      // A fresh window is the full length.
      expect(first.headers.get('ratelimit-reset')).toBe('2');
      await Bun.sleep(1100);
      // The other instance sees the same window, with what is left of it.
      const second = await write(b, api_key);
      expect(second.status).toBe(201);
      expect(second.headers.get('ratelimit-remaining')).toBe('0');
      expect(second.headers.get('ratelimit-reset')).toBe('1');
      const ttl = await inspect.pttl(`threadstore:rl:write:t:${id}`);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(900);
      const third = await write(a, api_key);
      expect(third.status).toBe(429);
      expect(third.headers.get('retry-after')).toBe('1');
      await Bun.sleep(1000);
      const fresh = await write(b, api_key);
      expect(fresh.status).toBe(201);
      expect(fresh.headers.get('ratelimit-remaining')).toBe('1');
      expect(fresh.headers.get('ratelimit-reset')).toBe('2');
    });
  });

  describe('a Redis outage', () => {
    let outage: RedisServer;
    let allow: TestApp;
    let deny: TestApp;
    let apiKey: string;
    const budget = { RATE_LIMIT_WRITE_PER_MINUTE: '1000', RATE_LIMIT_READ_PER_MINUTE: '1000' };
    beforeAll(async () => {
      outage = await startRedis();
      const redisEnv = { REDIS_URL: outage.url, REDIS_TIMEOUT_MS: String(TIMEOUT_MS), ...budget };
      allow = await appWith(redisEnv);
      deny = await appWith({ ...redisEnv, RATE_LIMIT_ON_STORE_ERROR: 'deny' });
      await allow.deps.rateLimitStore!.ready(5000);
      await deny.deps.rateLimitStore!.ready(5000);
      apiKey = (await allow.tenant()).api_key;
    });
    afterAll(async () => {
      await outage?.close();
    });

    test('while Redis is up, requests are counted and health passes', async () => {
      const res = await write(allow, apiKey);
      expect(res.status).toBe(201);
      expect(res.headers.get('ratelimit-remaining')).toBe('999');
      expect((await allow.call('GET', '/readyz')).json).toEqual({ status: 'ready' });
      const health = await allow.call('GET', '/v1/admin/health', { key: ADMIN_KEY });
      expect(health.json.checks.redis[0]).toMatchObject({ status: 'pass', observedValue: 'ready' });
    });

    test('Redis stopped: allow mode serves every request promptly, uncounted, never a 500', async () => {
      await outage.stop();
      const before = storeErrors((await allow.call('GET', '/metrics')).text);
      const results = await timed(40, () => write(allow, apiKey));
      for (const { res, ms } of results) {
        expect(res.status).toBe(201);
        expect(res.headers.get('ratelimit-limit')).toBeNull();
        expect(ms).toBeLessThan(TIMEOUT_MS + MARGIN_MS);
      }
      const after = storeErrors((await allow.call('GET', '/metrics')).text);
      // The 40 writes and the first /metrics scrape, which is counted (and failed) too.
      expect(after - before).toBe(41);
      // Logged, with the request id, but not once per request.
      const warnings = storeWarnings(allow);
      expect(warnings.length).toBeGreaterThanOrEqual(1);
      expect(warnings.length).toBeLessThanOrEqual(3);
      expect(warnings[0]!.request_id).toBeString();
      expect(warnings.at(-1)!.unlogged).toBeNumber();
    });

    test('deny mode refuses with 503 rate_limit_unavailable in the error shape, promptly', async () => {
      const results = await timed(20, () => write(deny, apiKey));
      for (const { res, ms } of results) {
        expect(res.status).toBe(503);
        expect(res.json.error.code).toBe('rate_limit_unavailable');
        expect(res.json.error.request_id).toBe(res.headers.get('x-request-id'));
        expect(res.headers.get('retry-after')).toBe('1');
        expect(res.headers.get('content-type')).toContain('application/json');
        expect(ms).toBeLessThan(TIMEOUT_MS + MARGIN_MS);
      }
      // The error plugin does not log each 503 on top of the rate-limited warning.
      const perRequest = deny.logs.lines.filter((l) => l.code === 'rate_limit_unavailable');
      expect(perRequest.length).toBe(0);
      expect(storeWarnings(deny).length).toBeLessThanOrEqual(3);
    });

    test('readiness stays 200 and shows the Redis check as warn', async () => {
      const ready = await allow.call('GET', '/readyz');
      expect(ready.status).toBe(200);
      expect(ready.json.status).toBe('ready');
      expect(ready.json.checks.redis[0]).toMatchObject({ status: 'warn' });
      const health = await allow.call('GET', '/v1/admin/health', { key: ADMIN_KEY });
      expect(health.status).toBe(200);
      expect(health.json.status).toBe('warn');
      expect(health.json.checks.redis[0].status).toBe('warn');
      expect(health.json.checks.redis[0].output).toContain('rate-limit counts failing');
      expect(health.json.output).toContain('redis');
    });

    test('after Redis comes back, counting resumes and health passes again', async () => {
      await outage.start();
      const deadline = Date.now() + 5000;
      let res = await write(allow, apiKey);
      let writes = 1;
      while (res.headers.get('ratelimit-limit') === null && Date.now() < deadline) {
        await Bun.sleep(100);
        res = await write(allow, apiKey);
        writes++;
      }
      expect(res.status).toBe(201);
      // A restarted Redis is empty: a new window, counted from here on.
      const remaining = Number(res.headers.get('ratelimit-remaining'));
      expect(remaining).toBeGreaterThan(990);
      const next = await write(allow, apiKey);
      expect(Number(next.headers.get('ratelimit-remaining'))).toBe(remaining - 1);
      expect((await allow.call('GET', '/readyz')).json).toEqual({ status: 'ready' });
      // The deny instance serves again too; the writes it refused were never stored.
      await deny.deps.rateLimitStore!.ready(5000);
      const list = await deny.call('GET', '/v1/messages?limit=200', { key: apiKey });
      expect(list.status).toBe(200);
      // Before the outage, during it (allowed), and since: nothing of the deny instance's.
      expect(list.json.messages.length).toBe(1 + 40 + writes + 1);
    });

    test('Redis hanging (SIGSTOP): each request still answers within the timeout', async () => {
      outage.kill('SIGSTOP');
      try {
        const results = await timed(20, () => write(allow, apiKey));
        for (const { res, ms } of results) {
          expect(res.status).toBe(201);
          expect(ms).toBeLessThan(TIMEOUT_MS + MARGIN_MS);
        }
        const denied = await timed(5, () => write(deny, apiKey));
        for (const { res, ms } of denied) {
          expect(res.status).toBe(503);
          expect(res.json.error.code).toBe('rate_limit_unavailable');
          expect(ms).toBeLessThan(TIMEOUT_MS + MARGIN_MS);
        }
        expect((await allow.call('GET', '/readyz')).json.checks.redis[0].status).toBe('warn');
      } finally {
        outage.kill('SIGCONT');
      }
    });
  });
});
