// Rate limits of a fleet with REDIS_URL: one budget across three processes, and a Redis that
// goes away mid-run and comes back on the same port. The in-process tests
// (test/rate-limit-redis.test.ts) cover the store itself; these cover separate binaries.
import { afterAll, beforeAll, expect, test } from 'bun:test';
import Redis from 'ioredis';
import { BUILD_TIMEOUT_MS, killAllServers } from '../../harness/binary';
import { findRedisServer, REDIS_INSTALL, type RedisServer, startRedis } from '../../harness/redis';
import { expectBudgetHeld } from '../support/rate-limit';
import { requireOrSkip } from '../support/requires';
import { faultBinary, send, tally, WriteLoad } from '../faults/support';
import { ADMIN_KEY, concurrently, type Fleet, message, metric, startFleet } from './support';

const describeRedis = requireOrSkip('Redis', findRedisServer() !== null, REDIS_INSTALL, {
  missing: 'redis-server is not on PATH',
});

const BUDGET = 100;
const WINDOW_MS = 5000;
const REDIS_TIMEOUT_MS = 200;
/** What a request may take on top of REDIS_TIMEOUT_MS: its own work on a busy 2-core machine. */
const MARGIN_MS = 800;
const STORE_ERRORS = 'threadstore_rate_limit_store_errors_total';

describeRedis('rate limits across three instances sharing one Redis', () => {
  let redis: RedisServer;
  let inspect: Redis;
  let fleet: Fleet;

  beforeAll(async () => {
    [redis] = await Promise.all([startRedis(), faultBinary()]);
    inspect = new Redis(redis.url);
    // Redis is stopped on purpose below; this client reconnects like the instances do.
    inspect.on('error', () => {});
    fleet = await startFleet('ratelimit', {
      REDIS_URL: redis.url,
      REDIS_TIMEOUT_MS: String(REDIS_TIMEOUT_MS),
      RATE_LIMIT_WRITE_PER_MINUTE: String(BUDGET),
      RATE_LIMIT_WINDOW_MS: String(WINDOW_MS),
    });
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await fleet?.close();
    await killAllServers();
    inspect?.disconnect();
    await redis?.close();
  });

  const stored = async (tenantId: string) =>
    (
      await fleet.sql<{ content: string }[]>`
      select content from messages where tenant_id = ${tenantId}`
    ).map((r) => r.content);

  test('300 concurrent writes over three instances against a budget of 100 admit exactly 100, in a window that starts at the first request', async () => {
    const tenant = await fleet.createTenant();
    const results = await concurrently(300, (i) =>
      fleet.next().call('POST', '/v1/messages', tenant.key, message(`burst ${i}`)),
    );
    const admitted = expectBudgetHeld(results, BUDGET, WINDOW_MS / 1000);
    // Every request was counted once, in the one counter all instances share.
    expect(await inspect.get(`threadstore:rl:write:t:${tenant.id}`)).toBe('300');
    // Exactly the admitted writes are stored.
    expect((await stored(tenant.id)).sort()).toEqual(admitted.map((r) => r.json.content).sort());

    // Another tenant's first request, a second later, opens a full window of its own, while the
    // first tenant's window keeps running down.
    await Bun.sleep(1000);
    const other = await fleet.createTenant();
    const first = await fleet.next().call('POST', '/v1/messages', other.key, message('first'));
    expect(first.status).toBe(201);
    expect(first.headers.get('ratelimit-remaining')).toBe(String(BUDGET - 1));
    expect(first.headers.get('ratelimit-reset')).toBe(String(WINDOW_MS / 1000));
    const still = await fleet.next().call('POST', '/v1/messages', tenant.key, message('late'));
    expect(still.status).toBe(429);
    expect(Number(still.headers.get('retry-after'))).toBeLessThan(WINDOW_MS / 1000);

    // Once the first tenant's window has ended, any instance admits it with a fresh budget.
    await Bun.sleep(Number(still.headers.get('retry-after')) * 1000 + 100);
    const fresh = await fleet.next().call('POST', '/v1/messages', tenant.key, message('fresh'));
    expect(fresh.status).toBe(201);
    expect(fresh.headers.get('ratelimit-remaining')).toBe(String(BUDGET - 1));
    expect((await stored(tenant.id)).length).toBe(BUDGET + 1);
  }, 30_000);

  test('with Redis hung and then stopped mid-run requests keep succeeding promptly, readiness stays 200 with a warning, and counting resumes once Redis is back', async () => {
    // The load's tenant has a budget no load here reaches, so every write should succeed.
    const tenant = await fleet.createTenant();
    const raised = await send(fleet.next(), 'PATCH', `/v1/admin/tenants/${tenant.id}`, ADMIN_KEY, {
      rate_limit_write_per_minute: 1_000_000,
    });
    expect(raised.status).toBe(200);
    const errorsBefore = await Promise.all(fleet.instances.map((s) => metric(s, STORE_ERRORS)));

    let phase = 'up';
    let seq = 0;
    // Declared first: the load asks for its first requests while it is being constructed.
    let load: WriteLoad<string> | undefined;
    load = new WriteLoad(
      // Retargeted to the next instance before every request: round-robin over the fleet.
      fleet.next(),
      tenant.key,
      6,
      (c, n) => {
        load?.retarget(fleet.next());
        return { path: '/v1/messages', body: message(`load ${c}-${n} ${seq++}`), meta: phase };
      },
      20,
    );
    const readings: { phase: string; instance: number; status: number; redis?: string }[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const polled = await Promise.all(
          fleet.instances.map((s) => send(s, 'GET', '/readyz', ADMIN_KEY)),
        );
        polled.forEach((r, instance) =>
          readings.push({
            phase,
            instance,
            status: r.status,
            redis: r.body?.checks?.redis?.[0]?.status,
          }),
        );
        await Bun.sleep(100);
      }
    })();
    try {
      await Bun.sleep(1000);
      // First Redis hangs (every call waits out REDIS_TIMEOUT_MS), then it is gone.
      phase = 'hung';
      redis.kill('SIGSTOP');
      await Bun.sleep(1500);
      phase = 'down';
      await redis.stop();
      await Bun.sleep(2500);
      phase = 'recovering';
      await redis.start();
      // Every instance reconnects in the background (within about a second).
      const deadline = performance.now() + 10_000;
      for (;;) {
        const last = readings.slice(-fleet.instances.length);
        if (last.length && last.every((r) => r.phase === 'recovering' && r.redis === undefined))
          break;
        if (performance.now() > deadline)
          throw new Error(`Redis not back: ${JSON.stringify(last)}`);
        await Bun.sleep(50);
      }
      phase = 'back';
      await Bun.sleep(1000);
    } finally {
      await load.stop();
      polling = false;
      await poller;
    }

    // No request failed and none stalled.
    expect(tally(load.attempts)).toEqual({ '201': load.attempts.length });
    expect(load.attempts.filter((a) => a.meta === 'hung').length).toBeGreaterThan(10);
    expect(load.attempts.filter((a) => a.meta === 'down').length).toBeGreaterThan(30);
    const slowest = Math.max(...load.attempts.map((a) => a.ms));
    console.info(
      `fleet redis outage: ${load.attempts.length} writes, slowest ${slowest.toFixed(0)} ms`,
    );
    expect(slowest).toBeLessThan(REDIS_TIMEOUT_MS + MARGIN_MS);
    expect((await stored(tenant.id)).length).toBe(load.attempts.length);

    // Readiness never failed; every instance reported Redis as a warning during the outage.
    expect(readings.filter((r) => r.status !== 200)).toEqual([]);
    for (let i = 0; i < fleet.instances.length; i++) {
      for (const outage of ['hung', 'down']) {
        const during = readings.filter((r) => r.instance === i && r.phase === outage);
        expect(during.some((r) => r.redis === 'warn')).toBe(true);
      }
    }
    expect(readings.filter((r) => r.phase === 'back' && r.redis !== undefined)).toEqual([]);

    // Every instance counted its store errors.
    const errorsAfter = await Promise.all(fleet.instances.map((s) => metric(s, STORE_ERRORS)));
    errorsAfter.forEach((after, i) => expect(after).toBeGreaterThan(errorsBefore[i]!));

    // Counting resumed on every instance: a fresh tenant gets exactly its budget again.
    const counted = await fleet.createTenant();
    const results = await concurrently(150, (i) =>
      fleet.send('POST', '/v1/messages', counted.key, message(`after ${i}`)),
    );
    expect(tally(results)).toEqual({ '201': BUDGET, '429 rate_limited': 150 - BUDGET });
    expect(await inspect.get(`threadstore:rl:write:t:${counted.id}`)).toBe('150');
    expect((await stored(counted.id)).length).toBe(BUDGET);
  }, 60_000);
});
