// Fault: the service itself is stopped under load, politely (SIGTERM) and not (SIGKILL), while
// PostgreSQL stays up.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { BUILD_TIMEOUT_MS, killAllServers } from '../../harness/binary';
import { type PostgresCluster, startPostgres } from '../../harness/postgres';
import {
  createTenant,
  faultBinary,
  inspector,
  send,
  startServer,
  tally,
  WriteLoad,
} from './support';

const SHUTDOWN_TIMEOUT_MS = 10_000;
const BATCH_SIZE = 20;

let cluster: PostgresCluster;
let sql: ReturnType<typeof inspector>;

beforeAll(async () => {
  [cluster] = await Promise.all([startPostgres(), faultBinary()]);
  sql = inspector(cluster.url);
}, BUILD_TIMEOUT_MS);

afterAll(async () => {
  await killAllServers();
  await sql?.end({ timeout: 5 });
  await cluster?.stop();
});

/** Contents of a tenant's stored messages, mapped to their ids. */
async function storedContents(tenantId: string): Promise<Map<string, string>> {
  const rows = await sql<{ id: string; content: string }[]>`
    select id, content from messages where tenant_id = ${tenantId}`;
  return new Map(rows.map((r) => [r.content, r.id]));
}

/** Waits until `count` requests of the service wait on a lock in PostgreSQL. */
async function waitForBlockedWrites(count: number, timeoutMs = 15_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const [row] = await sql<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity
      where application_name = 'threadstore' and wait_event_type = 'Lock'`;
    if (row!.n >= count) return;
    if (performance.now() > deadline)
      throw new Error(`only ${row!.n} of ${count} writes blocked on the lock`);
    await Bun.sleep(20);
  }
}

describe('SIGTERM under load', () => {
  test('requests in flight finish, every acknowledged write is stored, and the process exits 0 in time', async () => {
    const POOL = 16;
    const server = await startServer(cluster.url, {
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      DB_POOL_MAX: String(POOL),
      DB_POOL_ACQUIRE_TIMEOUT_MS: '10000',
      REQUEST_TIMEOUT_MS: '10000',
    });
    const tenant = await createTenant(server);
    const run = crypto.randomUUID().slice(0, 8);
    const load = new WriteLoad(server, tenant.key, 32, (c, seq) => {
      const content = `sigterm ${run} c${c} s${seq}`;
      return {
        path: '/v1/messages',
        body: { conversation_id: `conv-${c % 4}`, role: 'user', content },
        meta: content,
      };
    });
    // A second session holds the messages table, so that writes are provably in flight (waiting
    // in PostgreSQL and at the pool) when the signal arrives.
    const blocker = await sql.reserve();
    let inFlight: string[] = [];
    let signalledAt = 0;
    let exitedAt = 0;
    let code = -1;
    try {
      await load.waitForSuccesses(200, 30_000);
      await blocker`begin`;
      await blocker`lock table messages in access exclusive mode`;
      await waitForBlockedWrites(POOL);
      inFlight = [...load.inFlight].map((r) => r.meta);

      signalledAt = performance.now();
      server.proc.kill('SIGTERM');
      const exit = server.exited().then((c) => {
        exitedAt = performance.now();
        return c;
      });
      // Draining: the process waits for the blocked requests rather than dropping them.
      await Bun.sleep(500);
      expect(server.proc.exitCode).toBeNull();
      await blocker`rollback`;
      code = await exit;
    } finally {
      blocker.release();
      await load.stop();
    }

    console.info(
      'SIGTERM: outcomes',
      tally(load.attempts),
      `${inFlight.length} in flight at the signal, exit after ${(exitedAt - signalledAt) | 0} ms`,
    );
    expect(code).toBe(0);
    expect(exitedAt - signalledAt).toBeLessThan(SHUTDOWN_TIMEOUT_MS);
    expect(server.stdout).not.toContain('requests still running at the shutdown timeout');

    // Every request in flight at the signal was answered, and answered with success.
    expect(inFlight.length).toBeGreaterThanOrEqual(POOL);
    const outcome = new Map(load.attempts.map((a) => [a.meta, a]));
    const unfinished = inFlight.filter((meta) => outcome.get(meta)?.status !== 201);
    expect({ unfinished, outcomes: tally(load.attempts) }).toMatchObject({ unfinished: [] });

    const stored = await storedContents(tenant.id);
    const missing = load.succeeded().filter((a) => stored.get(a.meta) !== a.body.id);
    expect(missing.map((a) => a.meta)).toEqual([]);
  }, 120_000);
});

/** What a load request of the SIGKILL test stands for. */
type Write = { kind: 'single'; content: string } | { kind: 'batch'; tag: string };

describe('SIGKILL under load', () => {
  test('after a restart nothing acknowledged is missing and no batch is half-written', async () => {
    const server = await startServer(cluster.url);
    const tenant = await createTenant(server);
    const run = crypto.randomUUID().slice(0, 8);
    const load = new WriteLoad<Write>(server, tenant.key, 32, (c, seq) => {
      if (c % 2 === 0) {
        const content = `sigkill ${run} c${c} s${seq}`;
        return {
          path: '/v1/messages',
          body: { conversation_id: `conv-${c % 4}`, role: 'user', content },
          meta: { kind: 'single', content },
        };
      }
      const tag = `batch-${run}-c${c}-s${seq}`;
      return {
        path: '/v1/messages/batch',
        body: {
          messages: Array.from({ length: BATCH_SIZE }, (_, i) => ({
            conversation_id: `conv-${c % 4}`,
            role: i % 2 ? 'assistant' : 'user',
            content: `${tag} m${i}`,
            metadata: { batch: tag },
          })),
        },
        meta: { kind: 'batch', tag },
      };
    });
    try {
      await load.waitForSuccesses(300, 30_000);
      expect(load.inFlight.size).toBeGreaterThan(0);
      server.proc.kill('SIGKILL');
      expect(await server.exited()).not.toBe(0);
    } finally {
      await load.stop();
    }

    console.info('SIGKILL: outcomes', tally(load.attempts));
    const restarted = await startServer(cluster.url);
    expect(restarted.proc.exitCode).toBeNull();

    const acked = load.succeeded();
    const singles = acked.filter((a) => a.meta.kind === 'single');
    const batches = acked.filter((a) => a.meta.kind === 'batch');
    expect(singles.length).toBeGreaterThan(0);
    expect(batches.length).toBeGreaterThan(0);

    const stored = await storedContents(tenant.id);
    const missingSingles = singles.filter(
      (a) => a.meta.kind === 'single' && stored.get(a.meta.content) !== a.body.id,
    );
    expect(missingSingles.map((a) => a.meta)).toEqual([]);

    // All or nothing, per batch, whether or not it was acknowledged.
    const counts = new Map(
      (
        await sql<{ tag: string; n: number }[]>`
          select metadata->>'batch' as tag, count(*)::int as n from messages
          where tenant_id = ${tenant.id} and metadata ? 'batch' group by 1`
      ).map((r) => [r.tag, r.n]),
    );
    const partial = [...counts].filter(([, n]) => n !== BATCH_SIZE);
    expect(partial).toEqual([]);
    for (const a of batches) {
      if (a.meta.kind !== 'batch') continue;
      expect(counts.get(a.meta.tag)).toBe(BATCH_SIZE);
      const ids = (a.body.messages as { id: string; content: string }[]).map(
        (m) => stored.get(m.content) === m.id,
      );
      expect(ids).toEqual(Array(BATCH_SIZE).fill(true));
    }

    // The new process serves what the killed one acknowledged.
    const sample = singles.at(-1)!;
    const got = await send(restarted, 'GET', `/v1/messages/${sample.body.id}`, tenant.key);
    expect(got.status).toBe(200);
    expect(got.body.content).toBe((sample.meta as { content: string }).content);
    expect(await restarted.stop()).toBe(0);
  }, 120_000);
});
