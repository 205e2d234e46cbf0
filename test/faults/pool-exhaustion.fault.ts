// Fault: every pooled connection is held by writes that cannot finish (another session holds an
// ACCESS EXCLUSIVE lock on messages), so new requests find no connection.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import type { ServerProcess } from '../../harness/binary';
import { BUILD_TIMEOUT_MS, killAllServers } from '../../harness/binary';
import { type PostgresCluster, startPostgres } from '../../harness/postgres';
import { ADMIN_KEY, createTenant, faultBinary, inspector, send, startServer } from './support';

const POOL_MAX = 3;
/** Writes each connection takes at once (pipelined). */
const DEPTH = 2;
const HELD = POOL_MAX * DEPTH;
const ACQUIRE_TIMEOUT_MS = 500;
/** Scheduling slack on a busy 2-core machine on top of the acquire timeout. */
const SLACK_MS = 1500;

let cluster: PostgresCluster;
let server: ServerProcess;
let sql: ReturnType<typeof inspector>;

beforeAll(async () => {
  [cluster] = await Promise.all([startPostgres(), faultBinary()]);
  server = await startServer(cluster.url, {
    DB_POOL_MAX: String(POOL_MAX),
    DB_PIPELINE_DEPTH: String(DEPTH),
    DB_POOL_ACQUIRE_TIMEOUT_MS: String(ACQUIRE_TIMEOUT_MS),
    REQUEST_TIMEOUT_MS: '10000',
    // Keys stay cached, so that requests need a connection for their own work only.
    AUTH_CACHE_TTL_MS: '60000',
  });
  sql = inspector(cluster.url);
}, BUILD_TIMEOUT_MS);

afterAll(async () => {
  await killAllServers();
  await sql?.end({ timeout: 5 });
  await cluster?.stop();
});

const message = (content: string) => ({ conversation_id: 'pool', role: 'user', content });

async function poolGauges(): Promise<Record<string, number>> {
  const text = await (await fetch(server.url('/metrics'))).text();
  const gauges: Record<string, number> = {};
  for (const m of text.matchAll(/^threadstore_db_(?:pool_)?(\w+) (\d+)$/gm))
    gauges[m[1]!] = Number(m[2]);
  return gauges;
}

describe('database pool exhausted', () => {
  test('new requests get 503 database_busy within the acquire timeout, and succeed again once connections free up', async () => {
    const tenant = await createTenant(server);
    // Warm: the key is cached and the pool's connections are open.
    for (let i = 0; i < POOL_MAX; i++) {
      expect(
        (await send(server, 'POST', '/v1/messages', tenant.key, message(`warm ${i}`))).status,
      ).toBe(201);
    }

    const blocker = await sql.reserve();
    let held: Promise<Awaited<ReturnType<typeof send>>[]> = Promise.resolve([]);
    try {
      await blocker`begin`;
      await blocker`lock table messages in access exclusive mode`;
      // These take every connection, two deep, and wait on the lock.
      held = Promise.all(
        Array.from({ length: HELD }, (_, i) =>
          send(server, 'POST', '/v1/messages', tenant.key, message(`held ${i}`)),
        ),
      );
      const deadline = performance.now() + 10_000;
      while ((await poolGauges()).queries_in_flight !== HELD) {
        if (performance.now() > deadline) throw new Error('the pool never filled up');
        await Bun.sleep(20);
      }
      expect((await poolGauges()).in_use).toBe(POOL_MAX);

      // Writes, reads and the readiness probe all need a connection; none hangs.
      const shed = await Promise.all([
        ...Array.from({ length: 6 }, (_, i) =>
          send(server, 'POST', '/v1/messages', tenant.key, message(`shed ${i}`)),
        ),
        send(server, 'GET', '/v1/messages?limit=5', tenant.key),
        send(server, 'POST', '/v1/messages/batch', tenant.key, {
          messages: [message('shed batch 0'), message('shed batch 1')],
        }),
      ]);
      for (const res of shed) {
        expect(res.status).toBe(503);
        expect(res.body).toEqual({
          error: {
            code: 'database_busy',
            message: expect.any(String),
            request_id: expect.any(String),
          },
        });
        expect(Number(res.retryAfter)).toBeGreaterThan(0);
        // Waited for a connection for the whole acquire timeout, and not much longer.
        expect(res.ms).toBeGreaterThanOrEqual(ACQUIRE_TIMEOUT_MS - 50);
        expect(res.ms).toBeLessThan(ACQUIRE_TIMEOUT_MS + SLACK_MS);
      }
      const ready = await send(server, 'GET', '/readyz', '');
      expect(ready.status).toBe(503);
      expect(Number(ready.retryAfter)).toBeGreaterThan(0);
      expect(ready.ms).toBeLessThan(ACQUIRE_TIMEOUT_MS + SLACK_MS);
      // The health report says why, promptly.
      const health = await send(server, 'GET', '/v1/admin/health', ADMIN_KEY);
      expect(health.ms).toBeLessThan(2000 + SLACK_MS);
      expect(health.body.checks['database:connections'][0]).toMatchObject({
        observedValue: POOL_MAX,
        max: POOL_MAX,
      });
      // The held requests are still waiting, not failed.
      expect(
        await Promise.race([held.then(() => 'done'), Bun.sleep(10).then(() => 'waiting')]),
      ).toBe('waiting');
    } finally {
      await blocker`rollback`;
      blocker.release();
    }

    // Once the lock goes, the held writes complete and the pool serves everyone again.
    const finished = await held;
    expect(finished.map((r) => r.status)).toEqual(Array(HELD).fill(201));
    const after = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        send(server, 'POST', '/v1/messages', tenant.key, message(`after ${i}`)),
      ),
    );
    expect(after.map((r) => r.status)).toEqual(Array(20).fill(201));
    expect((await send(server, 'GET', '/readyz', '')).status).toBe(200);
    expect(await poolGauges()).toMatchObject({
      max: POOL_MAX,
      in_use: 0,
      waiting: 0,
      queries_in_flight: 0,
    });

    // Shed writes were never stored; held and later ones were.
    const rows = await sql<{ content: string }[]>`
      select content from messages where tenant_id = ${tenant.id}`;
    const contents = rows.map((r) => r.content);
    expect(contents.filter((c) => c.startsWith('shed'))).toEqual([]);
    expect(contents.filter((c) => c.startsWith('held')).length).toBe(HELD);
    expect(contents.filter((c) => c.startsWith('after')).length).toBe(20);
  }, 60_000);
});
