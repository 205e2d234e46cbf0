// The embedding backlog worked by a whole fleet: each instance runs a worker, all of them
// claiming from the same queue in PostgreSQL against one embedding service. Each message must be
// embedded exactly once, whichever worker took it, and the work must really be shared.
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { BUILD_TIMEOUT_MS, killAllServers } from '../../harness/binary';
import { type EmbeddingServer, startEmbeddingServer } from '../../harness/embedding-server';
import { requirePgvector } from '../support/requires';
import { faultBinary } from '../faults/support';
import { concurrently, type Fleet, message, metric, startFleet } from './support';

const describeVector = await requirePgvector();

const DIMENSIONS = 64;
const BATCH_SIZE = 8;
/** Messages written, in batches of 100 spread over the instances. */
const MESSAGES = 600;
const EMBEDDED_OK = 'threadstore_embedding_requests_total{outcome="ok"}';

describeVector('the embedding backlog across three instances', () => {
  let provider: EmbeddingServer;
  let fleet: Fleet;

  beforeAll(async () => {
    await faultBinary();
    // Slow enough that every worker is busy at once and a batch stays claimed for a while.
    provider = startEmbeddingServer({ dimensions: DIMENSIONS, mode: 'slow', delayMs: 40 });
    fleet = await startFleet('embeddings', {
      EMBEDDING_URL: provider.url,
      EMBEDDING_API_KEY: provider.apiKey!,
      EMBEDDING_DIMENSIONS: String(DIMENSIONS),
      EMBEDDING_BATCH_SIZE: String(BATCH_SIZE),
      EMBEDDING_POLL_INTERVAL_MS: '50',
    });
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    await fleet?.close();
    await killAllServers();
    await provider?.stop();
  });

  test('each message is embedded exactly once and becomes ready, with every instance taking a share', async () => {
    const tenant = await fleet.createTenant();
    const run = crypto.randomUUID().slice(0, 8);
    const texts = Array.from({ length: MESSAGES }, (_, i) => `fleet ${run} message ${i}`);
    const written = await concurrently(MESSAGES / 100, (b) =>
      fleet.send('POST', '/v1/messages/batch', tenant.key, {
        messages: texts.slice(b * 100, (b + 1) * 100).map((t) => message(t, `conv-${b}`)),
      }),
    );
    expect(written.map((w) => w.status)).toEqual(written.map(() => 201));

    // The backlog drains.
    const pending = async () =>
      (
        await fleet.sql<{ n: number }[]>`
          select count(*)::int as n from message_search s join messages m on m.id = s.message_id
          where m.tenant_id = ${tenant.id} and s.embedding_status <> 'ready'`
      )[0]!.n;
    const deadline = performance.now() + 30_000;
    while ((await pending()) > 0) {
      if (performance.now() > deadline) throw new Error(`backlog not drained: ${await pending()}`);
      await Bun.sleep(100);
    }

    const rows = await fleet.sql<{ content: string; status: string; has_vector: boolean }[]>`
      select m.content, s.embedding_status as status, s.embedding is not null as has_vector
      from messages m join message_search s on s.message_id = m.id
      where m.tenant_id = ${tenant.id}`;
    expect(rows.length).toBe(MESSAGES);
    expect(rows.filter((r) => r.status !== 'ready' || !r.has_vector)).toEqual([]);
    // Exactly once: no text was sent twice, not even to an answer nobody used.
    expect(texts.filter((t) => provider.timesEmbedded(t) !== 1)).toEqual([]);
    expect(provider.received.length).toBe(MESSAGES);

    // The work was shared: every instance's worker embedded some of it.
    const calls = await Promise.all(fleet.instances.map((s) => metric(s, EMBEDDED_OK)));
    console.info(`fleet embeddings: calls per instance ${calls.join(', ')}`);
    for (const n of calls) expect(n).toBeGreaterThan(0);
    expect(calls.reduce((a, b) => a + b, 0)).toBe(provider.requests.length);

    // Quiet once drained: nothing is embedded again.
    await Bun.sleep(500);
    expect(provider.received.length).toBe(MESSAGES);
  }, 60_000);
});
