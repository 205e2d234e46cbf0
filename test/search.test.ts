// POST /v1/search. Full-text, validation and the semantic-disabled answers run on the shared app
// (no embeddings configured). Semantic and hybrid search run on fresh databases with pgvector and
// the fake embeddings API; those suites skip loudly without pgvector (and fail under CI=true).
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { openDatabase } from '../src/db/client';
import { migrate } from '../src/db/migrate';
import { rowsOf } from '../src/db/raw';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/logger';
import type { SearchInput } from '../src/modules/search/model';
import { searchMessages } from '../src/modules/search/service';
import { buildTestApp, sharedApp, type TestApp } from './support/app';
import {
  cosineSimilarity,
  embedText,
  type EmbeddingServer,
  startEmbeddingServer,
} from '../harness/embedding-server';
import { createDatabase } from '../harness/postgres';
import { requirePgvector } from './support/requires';

const DIMENSIONS = 64;
const EMBEDDING_KEY = 'search-test-embedding-key';

type Call = TestApp['call'];
type Tenant = Awaited<ReturnType<TestApp['tenant']>>;

/** Stores messages for a tenant (one batch) and returns them as the API answered. */
async function store(
  app: TestApp,
  tenant: Tenant,
  messages: ({ content: string } & Record<string, unknown>)[],
) {
  const res = await app.call('POST', '/v1/messages/batch', {
    key: tenant.api_key,
    body: {
      messages: messages.map((m) => ({ conversation_id: 'conv-1', role: 'user', ...m })),
    },
  });
  if (res.status !== 201) throw new Error(`store failed: ${res.status} ${res.text}`);
  return res.json.messages as { id: string; content: string }[];
}

function search(call: Call, tenant: Tenant, body: Record<string, unknown>) {
  return call('POST', '/v1/search', { key: tenant.api_key, body });
}

const contents = (res: { json: { results: { message: { content: string } }[] } }) =>
  res.json.results.map((r) => r.message.content);

describe('full-text search', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await sharedApp();
  });

  test('its index keeps a short pending list, so searches after a burst of writes stay fast', async () => {
    // New GIN entries wait in a pending list that every search scans; the default 4 MB let a
    // burst of writes slow one-word searches tenfold.
    const [row] = rowsOf<{ options: string[] | null }>(
      await t.db.execute(
        sql`select reloptions as options from pg_class where relname = 'ix_message_search_tsv'`,
      ),
    );
    expect(row?.options).toContain('gin_pending_list_limit=256');
  });

  test('ranks denser matches first and leaves out messages without the words', async () => {
    const tenant = await t.tenant();
    await store(t, tenant, [
      { content: 'Where is my refund for order 42?' },
      { content: 'Refund, refund, refund: the refund has still not arrived' },
      { content: 'The weather in Lisbon is lovely today' },
    ]);
    const res = await search(t.call, tenant, { query: 'refund', mode: 'fulltext' });
    expect(res.status).toBe(200);
    expect(contents(res)).toEqual([
      'Refund, refund, refund: the refund has still not arrived',
      'Where is my refund for order 42?',
    ]);
    const [first, second] = res.json.results;
    expect(first.score).toBeGreaterThan(second.score);
    expect(second.score).toBeGreaterThan(0);
    expect(res.json).toMatchObject({ mode: 'fulltext', degraded: false });
    expect(first.matched).toEqual(['fulltext']);
  });

  test('answers each message in the same shape as the messages API', async () => {
    const tenant = await t.tenant();
    const [stored] = await store(t, tenant, [
      { content: 'Shipping label printed', metadata: { source: 'web' }, name: 'ana' },
    ]);
    const res = await search(t.call, tenant, { query: 'shipping label', mode: 'fulltext' });
    const got = await t.call('GET', `/v1/messages/${stored!.id}`, { key: tenant.api_key });
    expect(res.json.results).toHaveLength(1);
    expect(res.json.results[0].message).toEqual(got.json);
  });

  test('reads the query as a web search: phrases, or, and excluded words', async () => {
    const tenant = await t.tenant();
    await store(t, tenant, [
      { content: 'reset my password please' },
      { content: 'password was reset yesterday' },
      { content: 'the parcel is lost' },
    ]);
    const phrase = await search(t.call, tenant, { query: '"reset my password"', mode: 'fulltext' });
    expect(contents(phrase)).toEqual(['reset my password please']);
    const either = await search(t.call, tenant, { query: 'parcel or yesterday', mode: 'fulltext' });
    expect(contents(either).sort()).toEqual(['password was reset yesterday', 'the parcel is lost']);
    const without = await search(t.call, tenant, {
      query: 'password -yesterday',
      mode: 'fulltext',
    });
    expect(contents(without)).toEqual(['reset my password please']);
    // Operators that to_tsquery would reject are plain text here: never a 500.
    const odd = await search(t.call, tenant, { query: "a & b | !c ( ' :*", mode: 'fulltext' });
    expect(odd.status).toBe(200);
    expect(odd.json.results).toEqual([]);
  });

  test('returns at most limit results, 10 by default', async () => {
    const tenant = await t.tenant();
    await store(
      t,
      tenant,
      Array.from({ length: 12 }, (_, i) => ({ content: `invoice number ${i}` })),
    );
    const byDefault = await search(t.call, tenant, { query: 'invoice', mode: 'fulltext' });
    expect(byDefault.json.results).toHaveLength(10);
    const three = await search(t.call, tenant, { query: 'invoice', mode: 'fulltext', limit: 3 });
    expect(three.json.results).toHaveLength(3);
  });

  test('filters by conversation', async () => {
    const tenant = await t.tenant();
    await store(t, tenant, [
      { content: 'coupon code in conversation one', conversation_id: 'one' },
      { content: 'coupon code in conversation two', conversation_id: 'two' },
    ]);
    const res = await search(t.call, tenant, {
      query: 'coupon',
      mode: 'fulltext',
      conversation_id: 'two',
    });
    expect(contents(res)).toEqual(['coupon code in conversation two']);
  });

  test('leaves archived messages out unless include_archived is true', async () => {
    const tenant = await t.tenant();
    const [archived] = await store(t, tenant, [
      { content: 'archived discount message' },
      { content: 'current discount message' },
    ]);
    // No archive route yet: archive the way retention will, in SQL.
    await t.db.execute(
      sql`update messages set archived = true, archived_at = now() where id = ${archived!.id}`,
    );
    const res = await search(t.call, tenant, { query: 'discount', mode: 'fulltext' });
    expect(contents(res)).toEqual(['current discount message']);
    const all = await search(t.call, tenant, {
      query: 'discount',
      mode: 'fulltext',
      include_archived: true,
    });
    expect(contents(all).sort()).toEqual(['archived discount message', 'current discount message']);
    expect(all.json.results.find((r: any) => r.message.archived)?.message.id).toBe(archived!.id);
  });

  test('filters by creation time: created_after inclusive, created_before exclusive', async () => {
    const tenant = await t.tenant();
    await store(t, tenant, [
      { content: 'receipt from january', created_at: '2024-01-01T00:00:00.000Z' },
      { content: 'receipt from june', created_at: '2024-06-01T00:00:00.000Z' },
      { content: 'receipt from next year', created_at: '2025-01-01T00:00:00.000Z' },
    ]);
    const res = await search(t.call, tenant, {
      query: 'receipt',
      mode: 'fulltext',
      created_after: '2024-06-01T00:00:00.000Z',
      created_before: '2025-01-01T00:00:00.000Z',
    });
    expect(contents(res)).toEqual(['receipt from june']);
    const before = await search(t.call, tenant, {
      query: 'receipt',
      mode: 'fulltext',
      created_before: '2024-06-01T00:00:00Z',
    });
    expect(contents(before)).toEqual(['receipt from january']);
  });

  test('filters by metadata containment', async () => {
    const tenant = await t.tenant();
    await store(t, tenant, [
      {
        content: 'ticket from the web',
        metadata: { source: 'web', priority: 1, tags: ['a', 'b'] },
      },
      { content: 'ticket from the app', metadata: { source: 'app', nested: { team: 'blue' } } },
      { content: 'ticket without metadata' },
    ]);
    const web = await search(t.call, tenant, {
      query: 'ticket',
      mode: 'fulltext',
      metadata: { source: 'web' },
    });
    expect(contents(web)).toEqual(['ticket from the web']);
    const tagged = await search(t.call, tenant, {
      query: 'ticket',
      mode: 'fulltext',
      metadata: { tags: ['b'] },
    });
    expect(contents(tagged)).toEqual(['ticket from the web']);
    const nested = await search(t.call, tenant, {
      query: 'ticket',
      mode: 'fulltext',
      metadata: { nested: { team: 'blue' } },
    });
    expect(contents(nested)).toEqual(['ticket from the app']);
    const none = await search(t.call, tenant, {
      query: 'ticket',
      mode: 'fulltext',
      metadata: { source: 'web', priority: 2 },
    });
    expect(none.json.results).toEqual([]);
  });

  test("never returns another tenant's message", async () => {
    const mine = await t.tenant();
    const theirs = await t.tenant();
    await store(t, mine, [{ content: 'confidential merger plan' }]);
    await store(t, theirs, [
      { content: 'confidential merger plan' },
      { content: 'confidential merger plan, second draft' },
    ]);
    for (const mode of ['fulltext', 'hybrid']) {
      const res = await search(t.call, mine, { query: 'confidential merger', mode, limit: 50 });
      expect(res.status).toBe(200);
      expect(contents(res)).toEqual(['confidential merger plan']);
    }
  });

  test('runs hybrid as full-text when semantic search is not configured, and says so', async () => {
    const tenant = await t.tenant();
    await store(t, tenant, [{ content: 'hybrid falls back to words' }]);
    const res = await search(t.call, tenant, { query: 'words' });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ mode: 'fulltext', degraded: false });
    expect(res.json.results[0].matched).toEqual(['fulltext']);
  });

  test('answers 422 semantic_search_disabled, with the reason, to mode semantic', async () => {
    const tenant = await t.tenant();
    const res = await search(t.call, tenant, { query: 'anything', mode: 'semantic' });
    expect(res.status).toBe(422);
    expect(res.json.error.code).toBe('semantic_search_disabled');
    expect(res.json.error.message).toContain(t.deps.search.semanticReason!);
  });
});

describe('search request validation', () => {
  let t: TestApp;
  let tenant: Tenant;
  beforeAll(async () => {
    t = await sharedApp();
    tenant = await t.tenant();
  });

  const invalid: [string, unknown][] = [
    ['no query', { mode: 'fulltext' }],
    ['an empty query', { query: '' }],
    ['a blank query', { query: '   ' }],
    ['a query over 2000 characters', { query: 'x'.repeat(2001) }],
    ['a query that is not a string', { query: 42 }],
    ['an unknown mode', { query: 'q', mode: 'fuzzy' }],
    ['an unknown field', { query: 'q', sort: 'date' }],
    ['limit 0', { query: 'q', limit: 0 }],
    ['limit 51', { query: 'q', limit: 51 }],
    ['a fractional limit', { query: 'q', limit: 2.5 }],
    ['a numeric string as limit', { query: 'q', limit: '5' }],
    ['a string as include_archived', { query: 'q', include_archived: 'true' }],
    ['a number as include_archived', { query: 'q', include_archived: 1 }],
    ['an invalid conversation_id', { query: 'q', conversation_id: 'has spaces' }],
    ['a created_after that is not a date-time', { query: 'q', created_after: 'yesterday' }],
    ['a date without a time', { query: 'q', created_before: '2024-01-01' }],
    ['a date-time without an offset', { query: 'q', created_before: '2024-01-01T10:00:00' }],
    ['a date-time in another notation', { query: 'q', created_after: '2024/01/02 10:00' }],
    // JavaScript writes year 0 in a form PostgreSQL rejects (was a 500).
    ['a created_after in year 0', { query: 'q', created_after: '0000-01-01T00:00:00Z' }],
    ['a created_before in year 0', { query: 'q', created_before: '0001-01-01T00:30:00+01:00' }],
    ['metadata over 16 KiB', { query: 'q', metadata: { blob: 'x'.repeat(17 * 1024) } }],
    ['a string as metadata', { query: 'q', metadata: 's' }],
    ['an array as metadata', { query: 'q', metadata: [1] }],
    ['null as metadata', { query: 'q', metadata: null }],
    ['an array as the body', [{ query: 'q' }]],
    [
      'created_after not before created_before',
      { query: 'q', created_after: '2024-02-01T00:00:00Z', created_before: '2024-01-01T00:00:00Z' },
    ],
  ];
  for (const [what, body] of invalid) {
    test(`rejects ${what} with 422 validation_failed`, async () => {
      const res = await t.call('POST', '/v1/search', { key: tenant.api_key, body });
      expect(res.status).toBe(422);
      expect(res.json.error.code).toBe('validation_failed');
    });
  }

  test('accepts a 2000-character query', async () => {
    const res = await search(t.call, tenant, { query: 'x'.repeat(2000), mode: 'fulltext' });
    expect(res.status).toBe(200);
  });

  test('rejects a request without a key before looking at the body', async () => {
    const res = await t.call('POST', '/v1/search', { body: { nonsense: true } });
    expect(res.status).toBe(401);
    expect(res.json.error.code).toBe('unauthorized');
  });

  test('rejects a body that is not JSON', async () => {
    const res = await t.call('POST', '/v1/search', {
      key: tenant.api_key,
      raw: '{"query":',
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(400);
  });

  test('is documented in the OpenAPI document with its response schema', async () => {
    const doc = await t.call('GET', '/openapi.json');
    const op = doc.json.paths['/v1/search'].post;
    const schema = op.responses['200'].content['application/json'].schema;
    expect(Object.keys(schema.properties).sort()).toEqual(['degraded', 'mode', 'results']);
    expect(Object.keys(schema.properties.results.items.properties).sort()).toEqual([
      'matched',
      'message',
      'score',
    ]);
    expect(op.responses['503']).toBeDefined();
  });
});

// Semantic and hybrid search need pgvector and an embedding service: a fresh database (so the
// shared one keeps its full-text-only set-up) and the fake embeddings API.

/** A new database on the test server, migrated. */
async function freshDatabase(prefix: string): Promise<string> {
  const url = await createDatabase(
    process.env.TEST_DATABASE_URL!,
    `${prefix}_${crypto.randomUUID().replaceAll('-', '')}`,
  );
  const handle = await openDatabase(
    loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent' }),
    createLogger('silent'),
  );
  try {
    await migrate(handle);
  } finally {
    await handle.close();
  }
  return url;
}

/** An app with embeddings on; its worker is driven by hand (`embedAll`), so tests never wait. */
async function semanticApp(url: string, server: EmbeddingServer, env: Record<string, string> = {}) {
  const app = await buildTestApp(
    {
      DATABASE_URL: url,
      EMBEDDING_URL: server.url,
      EMBEDDING_API_KEY: EMBEDDING_KEY,
      EMBEDDING_DIMENSIONS: String(DIMENSIONS),
      EMBEDDING_MODEL: 'test-model',
      ...env,
    },
    { worker: false },
  );
  if (!app.deps.search.semantic || !app.worker) {
    throw new Error(`semantic search is off: ${app.deps.search.semanticReason}`);
  }
  return app;
}

/** Embeds every pending message, as the background worker would. */
async function embedAll(app: TestApp): Promise<void> {
  while ((await app.worker!.runOnce()) > 0) {}
  const left = rowsOf<{ n: number }>(
    await app.db.execute(
      sql`select count(*)::int as n from message_search where embedding_status <> 'ready'`,
    ),
  );
  expect(left[0]!.n).toBe(0);
}

const describeVector = await requirePgvector();

describeVector('semantic and hybrid search', () => {
  let server: EmbeddingServer;
  let t: TestApp;

  beforeAll(async () => {
    server = startEmbeddingServer({ dimensions: DIMENSIONS, apiKey: EMBEDDING_KEY });
    t = await semanticApp(await freshDatabase('search'), server);
  });

  afterAll(async () => {
    await t?.close();
    await server?.stop();
  });

  test('finds messages by meaning and scores them by cosine similarity', async () => {
    const tenant = await t.tenant();
    await store(t, tenant, [
      { content: 'I was refunded twice for the same order' },
      { content: 'The courier left the parcel at the door' },
      { content: 'Lovely sunny weather in Lisbon' },
    ]);
    await embedAll(t);
    const query = 'refunds';
    const res = await search(t.call, tenant, { query, mode: 'semantic' });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ mode: 'semantic', degraded: false });
    const [first] = res.json.results;
    expect(first.message.content).toBe('I was refunded twice for the same order');
    expect(first.matched).toEqual(['semantic']);
    expect(first.message.embedding_status).toBe('ready');
    for (const r of res.json.results) {
      const expected = cosineSimilarity(
        embedText(query, DIMENSIONS),
        embedText(r.message.content, DIMENSIONS),
      );
      expect(r.score).toBeCloseTo(expected, 4);
    }
    const scores = res.json.results.map((r: { score: number }) => r.score);
    expect(scores).toEqual([...scores].sort((a, b) => b - a));
    // The words differ ("refunds", "refunded"): full-text finds nothing, which is the point.
    const words = await search(t.call, tenant, { query, mode: 'fulltext' });
    expect(words.json.results).toEqual([]);
  });

  test('fuses both lists by reciprocal rank in hybrid mode, saying which found each', async () => {
    const tenant = await t.tenant();
    await store(t, tenant, [
      { content: 'refund policy: a refund within 30 days' },
      { content: 'they refunded me yesterday' },
      { content: 'the soup recipe needs basil' },
    ]);
    await embedAll(t);
    const res = await search(t.call, tenant, { query: 'refund', limit: 3 });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ mode: 'hybrid', degraded: false });
    const [both, semanticOnly] = res.json.results;
    expect(both.message.content).toBe('refund policy: a refund within 30 days');
    expect([...both.matched].sort()).toEqual(['fulltext', 'semantic']);
    // First in both lists: 1/(60+1) twice.
    expect(both.score).toBeCloseTo(2 / 61, 10);
    expect(semanticOnly.message.content).toBe('they refunded me yesterday');
    expect(semanticOnly.matched).toEqual(['semantic']);
    expect(semanticOnly.score).toBeCloseTo(1 / 62, 10);
  });

  test("never returns another tenant's message, in any mode", async () => {
    const mine = await t.tenant();
    const theirs = await t.tenant();
    const [own] = await store(t, mine, [{ content: 'secret launch date for the rocket' }]);
    await store(
      t,
      theirs,
      Array.from({ length: 20 }, (_, i) => ({ content: `secret launch date for the rocket ${i}` })),
    );
    await embedAll(t);
    for (const mode of ['fulltext', 'semantic', 'hybrid']) {
      const res = await search(t.call, mine, { query: 'secret rocket launch', mode, limit: 50 });
      expect(res.status).toBe(200);
      expect(res.json.results.map((r: { message: { id: string } }) => r.message.id)).toEqual([
        own!.id,
      ]);
    }
  });

  test('applies every filter in semantic and hybrid modes', async () => {
    const tenant = await t.tenant();
    const [keep, archived] = await store(t, tenant, [
      {
        content: 'warranty claim for the blender',
        conversation_id: 'support',
        metadata: { channel: 'email' },
        created_at: '2024-03-01T10:00:00.000Z',
      },
      {
        content: 'warranty claim for the toaster',
        conversation_id: 'support',
        metadata: { channel: 'email' },
        created_at: '2024-03-02T10:00:00.000Z',
      },
      {
        content: 'warranty claim for the kettle',
        conversation_id: 'sales',
        metadata: { channel: 'email' },
        created_at: '2024-03-03T10:00:00.000Z',
      },
      {
        content: 'warranty claim for the mixer',
        conversation_id: 'support',
        metadata: { channel: 'phone' },
        created_at: '2024-03-04T10:00:00.000Z',
      },
      {
        content: 'warranty claim for the fridge',
        conversation_id: 'support',
        metadata: { channel: 'email' },
        created_at: '2025-01-01T10:00:00.000Z',
      },
    ]);
    await t.db.execute(
      sql`update messages set archived = true, archived_at = now() where id = ${archived!.id}`,
    );
    await embedAll(t);
    const filters = {
      conversation_id: 'support',
      metadata: { channel: 'email' },
      created_after: '2024-01-01T00:00:00+02:00',
      created_before: '2024-12-31T00:00:00Z',
    };
    for (const mode of ['semantic', 'hybrid']) {
      const res = await search(t.call, tenant, { query: 'warranty claim', mode, ...filters });
      expect(res.json.mode).toBe(mode);
      expect(contents(res)).toEqual([keep!.content]);
      const all = await search(t.call, tenant, {
        query: 'warranty claim',
        mode,
        ...filters,
        include_archived: true,
      });
      expect(contents(all).sort()).toEqual([keep!.content, archived!.content].sort());
    }
  });

  describe('with a selective filter, still returns up to limit matches', () => {
    // A crowd of near-identical messages of another tenant (and of another conversation) around
    // a few of ours: a plain HNSW scan would return the crowd's nearest rows and filter them all
    // away. Both paths are checked: exact search (few candidates, what the app does here) and
    // the iterative index scan (forced by a threshold of 0).
    let small: Tenant;
    let crowd: Tenant;
    const query = 'invoice payment overdue reminder';

    beforeAll(async () => {
      small = await t.tenant();
      crowd = await t.tenant();
      for (let batch = 0; batch < 4; batch++) {
        await store(
          t,
          crowd,
          Array.from({ length: 100 }, (_, i) => ({
            content: `invoice payment overdue reminder number ${batch * 100 + i}`,
            conversation_id: 'bulk',
          })),
        );
      }
      await store(t, crowd, [
        { content: 'overdue invoice, second reminder', conversation_id: 'rare' },
        { content: 'payment reminder for the invoice', conversation_id: 'rare' },
      ]);
      await store(t, small, [
        { content: 'my invoice payment is overdue' },
        { content: 'reminder: invoice unpaid' },
        { content: 'weather is nice today' },
      ]);
      await embedAll(t);
    });

    const input = (over: Partial<SearchInput>): SearchInput => ({
      query,
      mode: 'semantic',
      limit: 10,
      includeArchived: false,
      ...over,
    });

    for (const exactSearchMaxRows of [undefined, 0]) {
      const path = exactSearchMaxRows === 0 ? 'iterative index scan' : 'exact search';
      test(`a tenant with few messages among many (${path})`, async () => {
        const res = await searchMessages(
          { db: t.db, search: t.deps.search, embedder: t.deps.embedder, exactSearchMaxRows },
          small.id,
          input({}),
        );
        expect(res.results).toHaveLength(3);
        expect(
          res.results
            .slice(0, 2)
            .map((r) => r.message.content)
            .sort(),
        ).toEqual(['my invoice payment is overdue', 'reminder: invoice unpaid']);
      });

      test(`a conversation with few messages among many (${path})`, async () => {
        const res = await searchMessages(
          { db: t.db, search: t.deps.search, embedder: t.deps.embedder, exactSearchMaxRows },
          crowd.id,
          input({ conversationId: 'rare' }),
        );
        expect(res.results.map((r) => r.message.content).sort()).toEqual([
          'overdue invoice, second reminder',
          'payment reminder for the invoice',
        ]);
      });
    }

    test('the crowd itself gets a full page', async () => {
      const res = await search(t.call, crowd, { query, mode: 'semantic', limit: 50 });
      expect(res.json.results).toHaveLength(50);
    });
  });
});

describeVector('search while the embedding service is down', () => {
  let server: EmbeddingServer;
  let t: TestApp;
  let tenant: Tenant;
  /** Under the interactive budget (1 s) plus one quick retry, with room for a slow machine. */
  const PROMPT_MS = 2500;

  beforeAll(async () => {
    server = startEmbeddingServer({ dimensions: DIMENSIONS, apiKey: EMBEDDING_KEY });
    t = await semanticApp(await freshDatabase('search_outage'), server, {
      EMBEDDING_BREAKER_COOLDOWN_MS: '1000',
    });
    tenant = await t.tenant();
    await store(t, tenant, [
      { content: 'the lighthouse keeper logbook' },
      { content: 'the harbour lighthouse' },
    ]);
    await embedAll(t);
  });

  afterAll(async () => {
    server?.release();
    await t?.close();
    await server?.stop();
  });

  async function timed(body: Record<string, unknown>) {
    const started = performance.now();
    const res = await search(t.call, tenant, body);
    return { res, ms: performance.now() - started };
  }

  test('messages not embedded yet are still found, by full-text', async () => {
    await store(t, tenant, [{ content: 'lighthouse beam still pending' }]);
    const res = await search(t.call, tenant, { query: 'lighthouse', limit: 10 });
    expect(res.json.mode).toBe('hybrid');
    const pending = res.json.results.find(
      (r: { message: { content: string } }) =>
        r.message.content === 'lighthouse beam still pending',
    );
    expect(pending.matched).toEqual(['fulltext']);
    expect(pending.message.embedding_status).toBe('pending');
    await embedAll(t);
  });

  for (const mode of ['fail500', 'stall'] as const) {
    test(`hybrid degrades to full-text, promptly, when the service answers ${mode}`, async () => {
      server.mode = mode;
      try {
        const { res, ms } = await timed({ query: 'lighthouse' });
        expect(res.status).toBe(200);
        expect(res.json).toMatchObject({ mode: 'fulltext', degraded: true });
        expect(res.json.results.length).toBeGreaterThan(0);
        for (const r of res.json.results) expect(r.matched).toEqual(['fulltext']);
        expect(ms).toBeLessThan(PROMPT_MS);
      } finally {
        server.mode = 'ok';
        server.release();
      }
    });

    test(`semantic answers 503 embeddings_unavailable with Retry-After on ${mode}`, async () => {
      server.mode = mode;
      try {
        const { res, ms } = await timed({ query: 'lighthouse', mode: 'semantic' });
        expect(res.status).toBe(503);
        expect(res.json.error.code).toBe('embeddings_unavailable');
        expect(res.headers.get('retry-after')).toMatch(/^[1-9]\d*$/);
        expect(ms).toBeLessThan(PROMPT_MS);
      } finally {
        server.mode = 'ok';
        server.release();
      }
    });
  }

  test('fails fast while the breaker is open, and recovers after its cool-down', async () => {
    server.mode = 'fail500';
    for (let i = 0; i < 5 && t.deps.embedder!.state().state !== 'open'; i++) {
      await search(t.call, tenant, { query: 'lighthouse', mode: 'semantic' });
    }
    expect(t.deps.embedder!.state().state).toBe('open');
    const callsBefore = server.calls;
    const { res, ms } = await timed({ query: 'lighthouse', mode: 'semantic' });
    expect(res.status).toBe(503);
    expect(server.calls).toBe(callsBefore);
    expect(ms).toBeLessThan(200);
    const degraded = await search(t.call, tenant, { query: 'lighthouse' });
    expect(degraded.json).toMatchObject({ mode: 'fulltext', degraded: true });

    server.mode = 'ok';
    await Bun.sleep(1100);
    const recovered = await search(t.call, tenant, { query: 'lighthouse' });
    expect(recovered.json).toMatchObject({ mode: 'hybrid', degraded: false });
  });
});
