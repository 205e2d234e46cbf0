import { afterAll, afterEach, beforeAll, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { rowsOf } from '../src/db/raw';
import { openDatabase } from '../src/db/client';
import { migrate } from '../src/db/migrate';
import { loadConfig } from '../src/config';
import { EmbeddingClient } from '../src/embeddings/client';
import { embeddingFailureCategories } from '../src/embeddings/failures';
import { EmbeddingsUnavailableError } from '../src/embeddings/types';
import { createLogger } from '../src/logger';
import { ADMIN_KEY, buildTestApp, type TestApp } from './support/app';
import { startEmbeddingServer } from '../harness/embedding-server';
import { createDatabase } from '../harness/postgres';
import { requirePgvector } from './support/requires';

const describeWithPgvector = await requirePgvector();

const DIMS = 16;
const server = startEmbeddingServer({ dimensions: DIMS });
let url = '';
const apps: TestApp[] = [];

/** Settings that make the breaker and the worker quick enough to watch in a test. */
const env = () => ({
  DATABASE_URL: url,
  EMBEDDING_URL: server.url,
  EMBEDDING_API_KEY: server.apiKey!,
  EMBEDDING_MODEL: 'test-model',
  EMBEDDING_DIMENSIONS: String(DIMS),
  EMBEDDING_TIMEOUT_MS: '500',
  EMBEDDING_MAX_RETRIES: '1',
  EMBEDDING_BREAKER_THRESHOLD: '3',
  EMBEDDING_BREAKER_COOLDOWN_MS: '800',
  EMBEDDING_POLL_INTERVAL_MS: '50',
  EMBEDDING_BATCH_SIZE: '8',
});

beforeAll(async () => {
  url = await createDatabase(
    process.env.TEST_DATABASE_URL!,
    `emb_${crypto.randomUUID().slice(0, 8)}`,
  );
});
// Each test's apps (and their background workers) stop when it ends: a worker left running
// would take work from the next test, which drives its own worker by hand.
afterEach(async () => {
  for (const app of apps.splice(0)) await app.close();
});
afterAll(async () => {
  await server.stop();
});

async function app(options: { worker?: boolean; env?: Record<string, string> } = {}) {
  const t = await buildTestApp({ ...env(), ...options.env }, options);
  apps.push(t);
  return t;
}

async function until<T>(what: string, fn: () => Promise<T>, ok: (v: T) => boolean, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v)) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}: ${JSON.stringify(v)}`);
    await Bun.sleep(50);
  }
}

const post = (t: TestApp, key: string, content: string) =>
  t.call('POST', '/v1/messages', { key, body: { conversation_id: 'e', role: 'user', content } });

describeWithPgvector('the embedding pipeline', () => {
  test('a write is stored pending at once, even while the service stalls, then embedded once', async () => {
    const t = await app();
    const { api_key } = await t.tenant();
    server.reset();
    server.mode = 'stall';
    const started = performance.now();
    const res = await post(t, api_key, 'written while the embedder stalls');
    expect(performance.now() - started).toBeLessThan(400);
    expect(res.status).toBe(201);
    expect(res.json.embedding_status).toBe('pending');
    server.mode = 'ok';
    server.release();
    const ready = await until(
      'ready',
      () => t.call('GET', `/v1/messages/${res.json.id}`, { key: api_key }),
      (r) => r.json.embedding_status === 'ready',
    );
    expect(ready.json.embedding_error).toBeNull();
    await Bun.sleep(200);
    expect(server.timesEmbedded('written while the embedder stalls')).toBe(1);
  });

  test('an outage: writes succeed, the circuit opens, health warns; then it closes and the backlog drains', async () => {
    const t = await app();
    const { api_key } = await t.tenant();
    server.reset();
    server.mode = 'fail500';
    const contents = Array.from({ length: 12 }, (_, i) => `outage message ${i}`);
    for (const c of contents) expect((await post(t, api_key, c)).status).toBe(201);
    const open = await until(
      'an open circuit',
      () => t.call('GET', '/v1/admin/health', { key: ADMIN_KEY }),
      (r) => r.json.checks.embeddings[0].circuit === 'open',
    );
    expect(open.status).toBe(200);
    expect(open.json.status).toBe('warn');
    expect(open.json.checks.embeddings[0].output).toContain('circuit open');
    expect(open.json.checks.embeddings[0].lastError).toContain('HTTP 500');
    expect(open.json.checks.embeddings[0].observedValue).toBeGreaterThan(0);
    const metrics = await t.call('GET', '/metrics');
    expect(metrics.text).toContain('threadstore_embedding_circuit_state 1');
    expect(metrics.text).toMatch(/threadstore_embedding_backlog [1-9]/);
    // While open, the worker does not hammer the service.
    const callsWhileOpen = server.calls;
    await Bun.sleep(300);
    expect(server.calls - callsWhileOpen).toBeLessThanOrEqual(1);

    server.mode = 'ok';
    const healthy = await until(
      'a drained backlog',
      () => t.call('GET', '/v1/admin/health', { key: ADMIN_KEY }),
      (r) =>
        r.json.checks.embeddings[0].observedValue === 0 &&
        r.json.checks.embeddings[0].status === 'pass',
      20_000,
    );
    expect(healthy.json.checks.embeddings[0].circuit).toBe('closed');
    for (const c of contents) expect(server.timesEmbedded(c)).toBe(1);
  }, 30_000);

  test('429 with Retry-After is retried after the delay it asks for', async () => {
    const t = await app();
    const { api_key } = await t.tenant();
    server.reset();
    server.retryAfterSeconds = 1;
    server.failNext(1, 'rateLimit429');
    const started = Date.now();
    const res = await post(t, api_key, 'rate limited once');
    await until(
      'ready',
      () => t.call('GET', `/v1/messages/${res.json.id}`, { key: api_key }),
      (r) => r.json.embedding_status === 'ready',
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(server.callsByMode.rateLimit429).toBe(1);
  });

  test('a refused input fails that message alone, with a clear error, and can be retried', async () => {
    const t = await app({ worker: false });
    const { api_key, id: tenantId } = await t.tenant();
    server.reset();
    const good = await post(t, api_key, 'an ordinary message');
    const bad = await post(t, api_key, 'the provider refuses this one');
    server.failNext(2, 'reject400'); // the batch, then the first of the one-by-one calls
    // The batch is refused; one by one, the first message is refused too, the second passes.
    await t.worker!.runOnce();
    const [g, b] = await Promise.all([
      t.call('GET', `/v1/messages/${good.json.id}`, { key: api_key }),
      t.call('GET', `/v1/messages/${bad.json.id}`, { key: api_key }),
    ]);
    const failed = [g.json, b.json].filter((m) => m.embedding_status === 'failed');
    expect(failed.length).toBe(1);
    expect(failed[0].embedding_error).toContain('refused');
    expect([g.json, b.json].filter((m) => m.embedding_status === 'ready').length).toBe(1);
    const retry = await t.call('POST', '/v1/admin/embeddings/retry', {
      key: ADMIN_KEY,
      body: { tenant_id: tenantId },
    });
    expect(retry.json).toEqual({ requeued: 1 });
    await t.worker!.runOnce();
    const again = await t.call('GET', `/v1/messages/${failed[0].id}`, { key: api_key });
    expect(again.json.embedding_status).toBe('ready');
  });

  test('vectors of the wrong dimension are refused and the message stays pending', async () => {
    const t = await app({ worker: false });
    const { api_key } = await t.tenant();
    server.reset();
    server.mode = 'wrongDimension';
    const res = await post(t, api_key, 'wrong dimension');
    await t.worker!.runOnce();
    const got = await t.call('GET', `/v1/messages/${res.json.id}`, { key: api_key });
    expect(got.json.embedding_status).toBe('pending');
    expect(got.json.embedding_error).toContain(`expected ${DIMS}`);
    server.mode = 'ok';
  });

  test('reindex drops the vectors and embeds every message again', async () => {
    const t = await app();
    const { api_key } = await t.tenant();
    server.reset();
    const res = await post(t, api_key, 'embedded twice after a reindex');
    await until(
      'ready',
      () => t.call('GET', `/v1/messages/${res.json.id}`, { key: api_key }),
      (r) => r.json.embedding_status === 'ready',
    );
    const reindex = await t.call('POST', '/v1/admin/embeddings/reindex', { key: ADMIN_KEY });
    expect(reindex.status).toBe(200);
    expect(reindex.json.queued).toBeGreaterThanOrEqual(1);
    await until(
      'embedded again',
      async () => server.timesEmbedded('embedded twice after a reindex'),
      (n) => n === 2,
    );
    const got = await until(
      'ready again',
      () => t.call('GET', `/v1/messages/${res.json.id}`, { key: api_key }),
      (r) => r.json.embedding_status === 'ready',
    );
    expect(got.json.embedding_error).toBeNull();
  }, 20_000);

  test('three workers share a backlog and embed each message exactly once', async () => {
    const writer = await app({ worker: false });
    const { api_key } = await writer.tenant();
    server.reset();
    server.mode = 'slow';
    server.delayMs = 30;
    const contents = Array.from({ length: 60 }, (_, i) => `shared backlog ${i}`);
    await writer.call('POST', '/v1/messages/batch', {
      key: api_key,
      body: {
        messages: contents.map((content) => ({ conversation_id: 'b', role: 'user', content })),
      },
    });
    await Promise.all([app(), app(), app()]);
    await until(
      'all embedded',
      async () => contents.filter((c) => server.timesEmbedded(c) > 0).length,
      (n) => n === 60,
    );
    await Bun.sleep(300);
    for (const c of contents) expect(server.timesEmbedded(c)).toBe(1);
    server.mode = 'ok';
  });
});

test('a search query gets at most its budget, then a clear EmbeddingsUnavailableError', async () => {
  server.reset();
  server.mode = 'stall';
  const client = new EmbeddingClient(
    loadConfig({
      EMBEDDING_URL: server.url,
      EMBEDDING_API_KEY: server.apiKey!,
      EMBEDDING_DIMENSIONS: String(DIMS),
      EMBEDDING_QUERY_BUDGET_MS: '600',
      EMBEDDING_TIMEOUT_MS: '5000',
    }),
  );
  const started = performance.now();
  const err = await client.embedQuery('anything').catch((e) => e);
  expect(performance.now() - started).toBeLessThan(1000);
  expect(err).toBeInstanceOf(EmbeddingsUnavailableError);
  expect(err.retryAfterSeconds).toBeGreaterThanOrEqual(1);
  server.release();
  server.mode = 'ok';
  expect((await client.embedQuery('refund for my order')).length).toBe(DIMS);
});

/** Requests the provider saw that carried `text` alone: the message's own attempts. */
const attemptsAlone = (text: string) =>
  server.requests.filter((r) => r.inputs.length === 1 && r.inputs[0] === text);
/** Requests the provider saw that carried `text`, alone or in a batch. */
const requestsWith = (text: string) => server.requests.filter((r) => r.inputs.includes(text));

/** `embedding_error` is `<category>: <threadstore's words>`. */
function expectCategorised(error: unknown, category: string) {
  expect(typeof error).toBe('string');
  const [head, ...rest] = (error as string).split(': ');
  expect(embeddingFailureCategories as readonly string[]).toContain(head!);
  expect(head).toBe(category);
  expect(rest.join(': ').length).toBeGreaterThan(0);
}

describeWithPgvector('messages the provider keeps failing', () => {
  const MAX_ATTEMPTS = 3;
  /**
   * A control call that times out does not show the provider works, so the failure before it
   * is not counted; on a loaded machine the 500 ms of the other tests would vary the counts.
   */
  const attemptsEnv = (max: number) => ({
    EMBEDDING_MAX_ATTEMPTS: String(max),
    EMBEDDING_TIMEOUT_MS: '5000',
  });

  test('one that fails transiently forever ends failed after EMBEDDING_MAX_ATTEMPTS attempts, and the others still embed', async () => {
    const t = await app({ env: attemptsEnv(MAX_ATTEMPTS) });
    const { api_key } = await t.tenant();
    server.reset();
    const poison = `poison ${crypto.randomUUID()}`;
    server.failFor(poison, 'fail503');
    const bad = await post(t, api_key, poison);
    const others = [];
    for (let i = 0; i < 5; i++) others.push(await post(t, api_key, `healthy neighbour ${i}`));

    // Health is read all along: the breaker must never open for one message.
    const circuits = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const h = await t.call('GET', '/v1/admin/health', { key: ADMIN_KEY });
        circuits.add(h.json.checks.embeddings[0].circuit);
        await Bun.sleep(50);
      }
    })();
    try {
      const failed = await until(
        'the poison message failed',
        () => t.call('GET', `/v1/messages/${bad.json.id}`, { key: api_key }),
        (r) => r.json.embedding_status === 'failed',
        20_000,
      );
      expectCategorised(failed.json.embedding_error, 'attempts_exhausted');
      expect(failed.json.embedding_error).toContain(`${MAX_ATTEMPTS} failed attempts`);
      expect(failed.json.embedding_error).toContain('provider_unavailable');
      for (const o of others) {
        const got = await t.call('GET', `/v1/messages/${o.json.id}`, { key: api_key });
        expect(got.json.embedding_status).toBe('ready');
      }
      // Exactly EMBEDDING_MAX_ATTEMPTS attempts of its own, after the batch it first came in
      // (tried 1 + EMBEDDING_MAX_RETRIES times), and nothing after it failed.
      expect(attemptsAlone(poison).length).toBe(MAX_ATTEMPTS);
      expect(requestsWith(poison).length).toBeLessThanOrEqual(MAX_ATTEMPTS + 2);
      const seen = requestsWith(poison).length;
      // Later messages embed at once: nothing holds the breaker open.
      const later = await post(t, api_key, 'written after the poison failed');
      await until(
        'the later message ready',
        () => t.call('GET', `/v1/messages/${later.json.id}`, { key: api_key }),
        (r) => r.json.embedding_status === 'ready',
        3000,
      );
      await Bun.sleep(300);
      expect(requestsWith(poison).length).toBe(seen);
    } finally {
      watching = false;
      await watcher;
    }
    expect([...circuits]).toEqual(['closed']);
  }, 30_000);

  test('an outage of the provider opens the breaker and counts against no message', async () => {
    const t = await app({ env: attemptsEnv(2) });
    const { api_key, id: tenantId } = await t.tenant();
    server.reset();
    server.mode = 'fail503';
    const contents = Array.from({ length: 6 }, (_, i) => `written during an outage ${i}`);
    for (const c of contents) expect((await post(t, api_key, c)).status).toBe(201);
    await until(
      'an open circuit',
      () => t.call('GET', '/v1/admin/health', { key: ADMIN_KEY }),
      (r) => r.json.checks.embeddings[0].circuit === 'open',
    );
    // Several cool-downs (800 ms each), each with a probe: far more failures than 2 attempts.
    await Bun.sleep(3000);
    expect(server.callsByMode.fail503).toBeGreaterThan(2);
    const during = await t.db.execute(sql`
      select s.embedding_status as status, s.failures from message_search s
      where s.tenant_id = ${tenantId}`);
    expect(rowsOf<{ status: string; failures: number }>(during)).toEqual(
      contents.map(() => ({ status: 'pending', failures: 0 })),
    );
    server.mode = 'ok';
    await until(
      'all embedded',
      async () => contents.filter((c) => server.timesEmbedded(c) === 1).length,
      (n) => n === contents.length,
      15_000,
    );
  }, 30_000);

  test("embedding_error is a category in threadstore's words: the provider's text reaches no answer and no log line", async () => {
    const LEAK = 'sk-live-abc123';
    const t = await app({ env: attemptsEnv(2) });
    const { api_key } = await t.tenant();
    server.reset();
    server.errorDetail = `(request with key ${LEAK})`;
    try {
      const unavailable = `keeps failing ${crypto.randomUUID()}`;
      const refused = `always refused ${crypto.randomUUID()}`;
      server.failFor(unavailable, 'fail503');
      server.failFor(refused, 'reject400');
      const waitFailed = (id: string, what: string) =>
        until(
          what,
          () => t.call('GET', `/v1/messages/${id}`, { key: api_key }),
          (r) => r.json.embedding_status === 'failed',
          20_000,
        );
      const b = await post(t, api_key, refused);
      await post(t, api_key, 'an ordinary message beside them');
      const rejected = await waitFailed(b.json.id, 'the refused message failed');
      expect(rejected.json.embedding_error).not.toContain(LEAK);
      expectCategorised(rejected.json.embedding_error, 'provider_rejected');
      const a = await post(t, api_key, unavailable);
      const exhausted = await waitFailed(a.json.id, 'the failing message failed');
      expectCategorised(exhausted.json.embedding_error, 'attempts_exhausted');
      // Semantic search while the provider fails: its 503 speaks threadstore's words too.
      server.mode = 'fail503';
      const search = await t.call('POST', '/v1/search', {
        key: api_key,
        body: { query: 'anything at all', mode: 'semantic' },
      });
      expect(search.status).toBe(503);
      server.mode = 'ok';
      const list = await t.call('GET', '/v1/messages?conversation_id=e', { key: api_key });
      expect(list.status).toBe(200);
      expect(list.json.messages.length).toBe(3);
      const health = await t.call('GET', '/v1/admin/health', { key: ADMIN_KEY });
      for (const text of [list.text, search.text, health.text, t.logs.raw.join('\n')]) {
        expect(text).not.toContain(LEAK);
        expect(text).not.toContain('overloaded');
        expect(text).not.toContain('input rejected');
      }
      // The provider did answer with the fragment: the check above is not vacuous.
      expect(server.callsByMode.fail503 + server.callsByMode.reject400).toBeGreaterThan(0);
    } finally {
      server.errorDetail = null;
    }
  }, 30_000);
});

describeWithPgvector('stored embeddings', () => {
  test('the embedding model or dimension cannot change silently', async () => {
    const fresh = await createDatabase(
      process.env.TEST_DATABASE_URL!,
      `emb_${crypto.randomUUID().slice(0, 8)}`,
    );
    const logger = createLogger('silent');
    const handle = await openDatabase(loadConfig({ DATABASE_URL: fresh }), logger);
    await migrate(handle);
    await handle.close();
    const first = await buildTestApp({ ...env(), DATABASE_URL: fresh });
    await first.close();
    const changed = buildTestApp({
      ...env(),
      DATABASE_URL: fresh,
      EMBEDDING_DIMENSIONS: String(DIMS * 2),
    });
    await expect(changed).rejects.toThrow(/threadstore embeddings reindex/);
  });
});

describeWithPgvector('full-text language', () => {
  test('a new SEARCH_LANGUAGE rebuilds the stored full-text vectors at start-up', async () => {
    const fresh = await createDatabase(
      process.env.TEST_DATABASE_URL!,
      `lang_${crypto.randomUUID().slice(0, 8)}`,
    );
    const simple = await buildTestApp({ DATABASE_URL: fresh, SEARCH_LANGUAGE: 'simple' });
    const { api_key } = await simple.tenant();
    await simple.call('POST', '/v1/messages', {
      key: api_key,
      body: { conversation_id: 'l', role: 'user', content: 'The dogs were running' },
    });
    const search = (t: TestApp) =>
      t.call('POST', '/v1/search', { key: api_key, body: { query: 'run', mode: 'fulltext' } });
    // 'simple' does not stem: "run" does not find "running".
    expect((await search(simple)).json.results.length).toBe(0);
    await simple.close();
    const english = await buildTestApp({ DATABASE_URL: fresh, SEARCH_LANGUAGE: 'english' });
    apps.push(english);
    expect((await search(english)).json.results.length).toBe(1);
  });
});
