// Fault: the embedding service goes down (connections refused), comes back slow, then answers
// 429 and 500, then recovers, while messages keep arriving. Writes must never notice; the
// circuit breaker and health must tell the story; the backlog must drain with each message
// embedded exactly once.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { PROVIDER_CHECK_TEXT } from '../../src/embeddings/client';
import type { ServerProcess } from '../../harness/binary';
import { BUILD_TIMEOUT_MS, killAllServers } from '../../harness/binary';
import {
  type EmbeddingServer,
  type EmbeddingServerMode,
  startEmbeddingServer,
} from '../../harness/embedding-server';
import { type PostgresCluster, startPostgres } from '../../harness/postgres';
import {
  ADMIN_KEY,
  createTenant,
  faultBinary,
  inspector,
  send,
  startServer,
  tally,
  WriteLoad,
} from './support';

const DIMENSIONS = 64;
const COOLDOWN_MS = 1000;
const HEALTH_POLL_MS = 100;
/** Modes in which the fake server answers with correct vectors. */
const SUCCESS_MODES: EmbeddingServerMode[] = ['ok', 'slow', 'stall'];

let cluster: PostgresCluster;
let server: ServerProcess;
let sql: ReturnType<typeof inspector>;
/** Every fake server that stood at the embedding URL, in order. */
const providers: EmbeddingServer[] = [];

beforeAll(async () => {
  [cluster] = await Promise.all([startPostgres(), faultBinary()]);
  providers.push(startEmbeddingServer({ dimensions: DIMENSIONS }));
  server = await startServer(cluster.url, {
    EMBEDDING_URL: providers[0]!.url,
    EMBEDDING_API_KEY: 'test-embedding-key',
    EMBEDDING_DIMENSIONS: String(DIMENSIONS),
    EMBEDDING_BATCH_SIZE: '16',
    EMBEDDING_POLL_INTERVAL_MS: '100',
    EMBEDDING_TIMEOUT_MS: '3000',
    EMBEDDING_MAX_RETRIES: '2',
    EMBEDDING_BREAKER_THRESHOLD: '3',
    EMBEDDING_BREAKER_COOLDOWN_MS: String(COOLDOWN_MS),
  });
  sql = inspector(cluster.url);
}, BUILD_TIMEOUT_MS);

afterAll(async () => {
  await killAllServers();
  await Promise.all(providers.map((p) => p.stop()));
  await sql?.end({ timeout: 5 });
  await cluster?.stop();
});

/** One reading of the admin health report. */
interface Reading {
  phase: string;
  httpStatus: number;
  status: string;
  circuit?: string;
  pending?: number;
  failed?: number;
}

async function readHealth(phase: string): Promise<Reading> {
  const res = await send(server, 'GET', '/v1/admin/health', ADMIN_KEY);
  const embeddings = res.body?.checks?.embeddings?.[0];
  return {
    phase,
    httpStatus: res.status,
    status: res.body?.status,
    circuit: embeddings?.circuit,
    pending: embeddings?.observedValue,
    failed: embeddings?.failedMessages,
  };
}

describe('embedding service outage', () => {
  test('writes keep succeeding, the circuit opens and closes, and the backlog drains with each message embedded once', async () => {
    // Embeddings are really on: otherwise everything below would pass vacuously.
    expect((await readHealth('start')).circuit).toBe('closed');

    const tenant = await createTenant(server);
    const run = crypto.randomUUID().slice(0, 8);
    const load = new WriteLoad(
      server,
      tenant.key,
      4,
      (c, seq) => {
        const content = `embeddings ${run} client ${c} message ${seq}`;
        return {
          path: '/v1/messages',
          body: { conversation_id: `conv-${c}`, role: 'user', content },
          meta: content,
        };
      },
      50,
    );

    let phase = 'ok';
    const readings: Reading[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        readings.push(await readHealth(phase));
        await Bun.sleep(HEALTH_POLL_MS);
      }
    })();
    const port = providers[0]!.port;
    try {
      await Bun.sleep(1500);

      phase = 'down';
      await providers[0]!.stop();
      await Bun.sleep(3 * COOLDOWN_MS);

      phase = 'slow';
      const provider = startEmbeddingServer({
        port,
        dimensions: DIMENSIONS,
        mode: 'slow',
        delayMs: 400,
      });
      providers.push(provider);
      await Bun.sleep(2000);

      phase = 'rate-limited';
      provider.mode = 'rateLimit429';
      await Bun.sleep(1500);

      phase = 'failing';
      provider.mode = 'fail500';
      await Bun.sleep(1500);

      phase = 'back';
      provider.mode = 'ok';
      await Bun.sleep(1000);
    } finally {
      await load.stop();
    }

    // The backlog drains once the service is back.
    phase = 'draining';
    const deadline = performance.now() + 30_000;
    for (;;) {
      const last = readings.at(-1);
      if (last?.phase === 'draining' && last.pending === 0 && last.circuit === 'closed') break;
      if (performance.now() > deadline)
        throw new Error(`backlog did not drain: ${JSON.stringify(readings.slice(-3))}`);
      await Bun.sleep(HEALTH_POLL_MS);
    }
    polling = false;
    await poller;
    const provider = providers[1]!;

    // Writes never noticed.
    expect(tally(load.attempts)).toEqual({ '201': load.attempts.length });
    expect(load.attempts.length).toBeGreaterThan(100);

    // The worker met every kind of failure.
    expect(provider.callsByMode.slow).toBeGreaterThan(0);
    expect(provider.callsByMode.rateLimit429).toBeGreaterThan(0);
    expect(provider.callsByMode.fail500).toBeGreaterThan(0);

    // Health: pass with the circuit closed, warn with it open while the service was down, never
    // fail (messages are still stored and served), and pass again at the end.
    const byPhase: Record<string, number> = {};
    for (const r of readings) {
      const key = `${r.phase}: ${r.status}, circuit ${r.circuit}`;
      byPhase[key] = (byPhase[key] ?? 0) + 1;
    }
    console.info('embeddings: health readings', byPhase, 'requests', provider.callsByMode);
    expect(readings.filter((r) => r.httpStatus !== 200 || r.status === 'fail')).toEqual([]);
    const duringOutage = readings.filter((r) => r.phase === 'down');
    expect(duringOutage.some((r) => r.circuit === 'open' && r.status === 'warn')).toBe(true);
    expect(readings.filter((r) => r.circuit !== 'closed' && r.status !== 'warn')).toEqual([]);
    const final = await readHealth('end');
    expect(final).toMatchObject({ status: 'pass', circuit: 'closed', pending: 0, failed: 0 });
    const metrics = await (await fetch(server.url('/metrics'))).text();
    expect(metrics).toContain('threadstore_embedding_circuit_state 0');
    expect(metrics).toMatch(/threadstore_embedding_requests_total\{outcome="error"\} [1-9]/);

    // Every message is stored with its vector, and the outage counted against none of them.
    const rows = await sql<
      { content: string; status: string; has_vector: boolean; failures: number }[]
    >`
      select m.content, s.embedding_status as status, s.embedding is not null as has_vector,
        s.failures
      from messages m join message_search s on s.message_id = m.id
      where m.tenant_id = ${tenant.id}`;
    expect(rows.length).toBe(load.attempts.length);
    expect(rows.filter((r) => r.status !== 'ready' || !r.has_vector)).toEqual([]);
    console.info(
      'embeddings: messages charged a failed attempt',
      rows.filter((r) => r.failures > 0).length,
    );

    // Exactly once: each text got one successful answer, and was never sent again after it.
    // Failed calls may legitimately have sent it before.
    const requests = providers.flatMap((p) => p.requests);
    const problems: string[] = [];
    for (const { content } of rows) {
      const containing = requests.filter((r) => r.inputs.includes(content));
      const successes = containing.filter((r) => SUCCESS_MODES.includes(r.mode)).length;
      const lastMode = containing.at(-1)?.mode;
      if (successes !== 1 || !SUCCESS_MODES.includes(lastMode!)) {
        problems.push(`${content}: ${containing.map((r) => r.mode).join(',')}`);
      }
    }
    expect(problems).toEqual([]);
    // The worker's control calls (checkProvider) are not messages.
    const embeddedTexts = providers
      .flatMap((p) => p.embedded)
      .filter((text) => text !== PROVIDER_CHECK_TEXT);
    expect(embeddedTexts.length).toBe(rows.length);

    // Quiet once drained: nothing is re-embedded.
    const calls = provider.calls;
    await Bun.sleep(1000);
    expect(provider.calls).toBe(calls);
  }, 120_000);
});
