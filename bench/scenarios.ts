// The data the read scenarios work on, and the middleware the bench switches off one at a time.
import type autocannon from 'autocannon';
import type postgres from 'postgres';
import { type ServerProcess, type Tenant, api, createTenant } from './lib';

// 1,000 made-up words, so that a one-word query matches about 1% of the corpus, as a word of
// a real conversation does, rather than a quarter of it.
const SYLLABLES = 'ka lo mi ten ru sha vo pel dri gan zu fe bor nix tal quo'.split(' ');
const VOCABULARY = Array.from(
  { length: 1_000 },
  (_, n) => `${SYLLABLES[n % 16]}${SYLLABLES[(n >> 4) % 16]}${SYLLABLES[(n >> 8) % 16]}`,
);
const LIST_MESSAGES = 1_000;
const SEARCH_MESSAGES = 4_000;
const BATCH = 100;
const EMBEDDING_WAIT_MS = 180_000;

export interface Corpus {
  tenant: Tenant;
  /** A conversation of LIST_MESSAGES messages; the list scenario reads its first page. */
  listConversation: string;
  /** Ids to get by id, spread over the corpus. */
  ids: string[];
  /** Words of the corpus, for search queries that find something. */
  queries: string[];
}

/** Deterministic sentences, so every run searches the same data. */
function sentence(n: number): string {
  const words = Array.from(
    { length: 12 },
    (_, i) => VOCABULARY[(n * 7919 + i * 104_729 + i * i * 31) % VOCABULARY.length],
  );
  return `${words.join(' ')} (note ${n})`;
}

/** Seeds one tenant through the API and waits until every message is embedded. */
export async function seedCorpus(ts: ServerProcess, sql: postgres.Sql): Promise<Corpus> {
  const tenant = await createTenant(ts.base, 'bench reads');
  const ids: string[] = [];
  const store = async (conversation: (n: number) => string, total: number, offset: number) => {
    for (let start = 0; start < total; start += BATCH) {
      const messages = Array.from({ length: Math.min(BATCH, total - start) }, (_, i) => ({
        conversation_id: conversation(start + i),
        role: (start + i) % 2 ? 'assistant' : 'user',
        content: sentence(offset + start + i),
        metadata: { n: offset + start + i },
      }));
      const res = await api<{ messages: { id: string }[] }>(
        ts.base,
        'POST',
        '/v1/messages/batch',
        tenant.api_key,
        { messages },
        201,
      );
      ids.push(...res.messages.filter((_, i) => i % 2 === 0).map((m) => m.id));
    }
  };
  await store(() => 'list', LIST_MESSAGES, 0);
  await store((n) => `topic-${n % 40}`, SEARCH_MESSAGES, LIST_MESSAGES);
  await embeddingBacklogDrained(sql);
  // Statistics as a database that has been running has them. Left to autovacuum (a minute or
  // more away), the planner took the tenant for 30 rows and checked all 5,000 of its messages
  // against the query instead of asking the full-text index: 26 ms instead of about 1.
  await sql`analyze messages, message_search`;
  return {
    tenant,
    listConversation: 'list',
    ids,
    queries: VOCABULARY.filter((_, i) => i % 40 === 0),
  };
}

/**
 * Waits until no message waits for its embedding, and says how long that took: writes leave a
 * backlog that the embedding worker works off in the background, and a scenario that ran
 * meanwhile would measure the worker as much as itself.
 */
export async function embeddingBacklogDrained(
  sql: postgres.Sql,
): Promise<{ messages: number; seconds: number }> {
  const started = Date.now();
  const deadline = started + EMBEDDING_WAIT_MS;
  let first = -1;
  for (;;) {
    const [row] = await sql<{ n: number }[]>`
      select count(*)::int as n from message_search where embedding_status = 'pending'`;
    if (first < 0) first = row!.n;
    if (row!.n === 0) break;
    if (Date.now() > deadline) throw new Error(`${row!.n} messages still not embedded`);
    await Bun.sleep(200);
  }
  return { messages: first, seconds: (Date.now() - started) / 1000 };
}

export interface MiddlewareVariant {
  name: string;
  description: string;
  env: Record<string, string>;
  /** Scenarios paired with threadstore as shipped; create and list unless given. */
  scenarios?: ('create' | 'list' | 'mixed 80/20')[];
}

/** One piece at a time, switched off through configuration; everything else as shipped. */
export const middlewareVariants: MiddlewareVariant[] = [
  {
    name: 'no request log',
    description: 'LOG_LEVEL=warn: no log line for successful requests',
    env: { LOG_LEVEL: 'warn' },
  },
  {
    name: 'no rate limiter',
    description: 'RATE_LIMIT_ENABLED=false: no counting, no RateLimit headers',
    env: { RATE_LIMIT_ENABLED: 'false' },
  },
  {
    name: 'no metrics',
    description: 'REQUEST_METRICS=false: no per-request histogram or counters',
    env: { REQUEST_METRICS: 'false' },
  },
  {
    name: 'no pipelining',
    description: 'DB_PIPELINE_DEPTH=1: one query at a time on each database connection',
    env: { DB_PIPELINE_DEPTH: '1' },
    // Pipelined queries wait behind slower ones on their connection: the mixed workload's
    // searches show what that does to the tail.
    scenarios: ['create', 'list', 'mixed 80/20'],
  },
  {
    name: 'no key cache',
    description: 'AUTH_CACHE_TTL_MS=0: the key is looked up in PostgreSQL on every request',
    env: { AUTH_CACHE_TTL_MS: '0' },
  },
];

const pick = <T>(xs: readonly T[]) => xs[Math.floor(Math.random() * xs.length)]!;

/**
 * The mixed workload, 80% reads and 20% writes: each connection cycles through a page of a
 * conversation, a message by id, a full-text search, a page of conversations, and one create.
 * `onCreated` is called for each create answered 201.
 */
export function mixedRequests(corpus: Corpus, onCreated: () => void): autocannon.Request[] {
  return [
    { method: 'GET', path: `/v1/messages?conversation_id=${corpus.listConversation}&limit=50` },
    { method: 'GET', setupRequest: (r) => ({ ...r, path: `/v1/messages/${pick(corpus.ids)}` }) },
    {
      method: 'POST',
      path: '/v1/search',
      setupRequest: (r) => ({
        ...r,
        body: JSON.stringify({ query: pick(corpus.queries), mode: 'fulltext', limit: 10 }),
      }),
    },
    { method: 'GET', path: '/v1/conversations?limit=20' },
    {
      method: 'POST',
      path: '/v1/messages',
      body: JSON.stringify({
        conversation_id: 'mixed',
        role: 'user',
        content: 'hello '.repeat(20),
      }),
      onResponse: (status) => {
        if (status === 201) onCreated();
      },
    },
  ];
}
