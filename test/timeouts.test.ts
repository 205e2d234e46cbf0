import { afterAll, describe, expect, test } from 'bun:test';
import postgres from 'postgres';
import { ADMIN_KEY, buildTestApp } from './support/app';

// A second session that blocks the app's writes by locking the messages table: real slowness,
// from the database, with no test-only path in the service.
const blocker = postgres(process.env.TEST_DATABASE_URL!, { max: 2, onnotice: () => {} });
afterAll(() => blocker.end());

async function whileLocked<T>(fn: () => Promise<T>, holdMs: number): Promise<T> {
  const reserved = await blocker.reserve();
  await reserved`begin`;
  await reserved`lock table messages in access exclusive mode`;
  const release = Bun.sleep(holdMs).then(async () => {
    await reserved`rollback`;
    reserved.release();
  });
  try {
    return await fn();
  } finally {
    await release;
  }
}

const message = (content: string) => ({ conversation_id: 'slow', role: 'user', content });

describe('request timeout', () => {
  test('a request past REQUEST_TIMEOUT_MS gets 503 request_timeout and its query is cancelled', async () => {
    const t = await buildTestApp({ REQUEST_TIMEOUT_MS: '400' });
    try {
      const { api_key, id } = await t.tenant();
      const marker = `timeout-${crypto.randomUUID()}`;
      const started = performance.now();
      const res = await whileLocked(async () => {
        const r = await t.call('POST', '/v1/messages', { key: api_key, body: message(marker) });
        // Still locked here: the statement must already be gone from the server.
        await Bun.sleep(300);
        const active = await blocker`select count(*)::int as n from pg_stat_activity
          where application_name = 'threadstore' and state = 'active' and query ilike 'with%insert%'`;
        expect(active[0]!.n).toBe(0);
        return r;
      }, 1200);
      expect(performance.now() - started).toBeLessThan(2500);
      expect(res.status).toBe(503);
      expect(res.json.error.code).toBe('request_timeout');
      expect(res.headers.get('retry-after')).toBe('1');
      expect(res.headers.get('x-request-id')).toBe(res.json.error.request_id);
      // Cancelled, so never stored, even after the lock is gone.
      await Bun.sleep(100);
      const stored = await blocker`select count(*)::int as n from messages where tenant_id = ${id}`;
      expect(stored[0]!.n).toBe(0);
      // The app is healthy afterwards.
      expect(
        (await t.call('POST', '/v1/messages', { key: api_key, body: message('after') })).status,
      ).toBe(201);
      const metrics = await t.call('GET', '/metrics');
      if (metrics.status === 200)
        expect(metrics.text).toMatch(/threadstore_request_timeouts_total 1/);
    } finally {
      await t.close();
    }
  });
});

describe('long admin operations', () => {
  test('a retention run has RETENTION_RUN_TIMEOUT_MS, not REQUEST_TIMEOUT_MS, in every spelling of its route', async () => {
    const t = await buildTestApp({ REQUEST_TIMEOUT_MS: '300', RETENTION_RUN_TIMEOUT_MS: '20000' });
    try {
      const { id } = await t.tenant();
      // Something to archive, so the run must wait for the locked messages table.
      await blocker`update tenants set settings = ${blocker.json({ archive_after_days: 1 })}
        where id = ${id}`;
      await blocker`insert into conversations (tenant_id, id) values (${id}, 'old')`;
      await blocker`insert into messages (id, tenant_id, conversation_id, role, content, created_at)
        values (gen_random_uuid(), ${id}, 'old', 'user', 'old', now() - interval '30 days')`;
      for (const path of ['/v1/admin/retention/run', '/v1/admin/retention/run/']) {
        const res = await whileLocked(
          () => t.call('POST', path, { key: ADMIN_KEY, body: {} }),
          800,
        );
        expect({ path, status: res.status }).toEqual({ path, status: 200 });
      }
    } finally {
      await t.close();
    }
  });
});

describe('pool exhaustion', () => {
  test('requests beyond the pool and its pipelines wait at most DB_POOL_ACQUIRE_TIMEOUT_MS, then get 503 database_busy', async () => {
    const t = await buildTestApp({
      DB_POOL_MAX: '2',
      DB_PIPELINE_DEPTH: '2',
      DB_POOL_ACQUIRE_TIMEOUT_MS: '300',
      REQUEST_TIMEOUT_MS: '5000',
    });
    try {
      const { api_key } = await t.tenant();
      const results = await whileLocked(
        () =>
          Promise.all(
            Array.from({ length: 7 }, (_, i) =>
              t.call('POST', '/v1/messages', { key: api_key, body: message(`p${i}`) }),
            ),
          ),
        1000,
      );
      const statuses = results.map((r) => r.status).sort();
      // Two connections took two writes each and finished them once the lock went; the rest
      // were shed.
      expect(statuses).toEqual([201, 201, 201, 201, 503, 503, 503]);
      for (const r of results.filter((x) => x.status === 503)) {
        expect(r.json.error.code).toBe('database_busy');
        expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
      }
      // Recovered: the pool serves again.
      expect((await t.call('GET', '/v1/messages', { key: api_key })).status).toBe(200);
      expect(t.database.poolStats()).toEqual({ max: 2, inUse: 0, waiting: 0, inFlight: 0 });
    } finally {
      await t.close();
    }
  });

  test('a burst of 128 concurrent clients on a pool of 10 queues and succeeds', async () => {
    const t = await buildTestApp({ DB_POOL_MAX: '10' });
    try {
      const { api_key } = await t.tenant();
      const results = await Promise.all(
        Array.from({ length: 128 }, (_, i) =>
          i % 2
            ? t.call('GET', '/v1/messages?limit=5', { key: api_key })
            : t.call('POST', '/v1/messages', { key: api_key, body: message(`b${i}`) }),
        ),
      );
      expect(results.every((r) => r.status === 200 || r.status === 201)).toBe(true);
    } finally {
      await t.close();
    }
  });
});
