// The data the read scenarios work on, and the middleware the bench switches off one at a time.
import type autocannon from 'autocannon';
import type postgres from 'postgres';
import { type ServerProcess, type Tenant, api, createTenant, load } from './lib';
import type { Run } from './types';

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

/** Messages of the flooding tenant in the fairness scenario, every one with FLOOD_WORD. */
const FLOOD_MESSAGES = 20_000;
const FLOOD_WORD = 'common';
/** Connections of the flood, and of the lone tenant that must see no refusal. */
const FLOOD_CONNECTIONS = 128;
const ALONE_CONNECTIONS = 256;
/** Connections of the tenant whose latency is watched. */
const VICTIM_CONNECTIONS = 4;

/** What the fairness scenario measured. */
export interface FairnessResult {
  /** Tenant B's cheap read alone, then while tenant A floods expensive searches. */
  unloaded: Run;
  loaded: Run;
  flood: Run;
  alone: Run;
  /** B's p99 loaded over unloaded (unloaded taken as at least 1 ms). */
  p99Ratio: number;
  /** Answers by status code: A's during the flood, B's under it, B's alone at 256. */
  floodStatuses: Record<string, number>;
  aloneStatuses: Record<string, number>;
  victimStatuses: Record<string, number>;
}

const statusesOf = (raw: autocannon.Result): Record<string, number> =>
  Object.fromEntries(
    Object.entries(
      (raw as unknown as { statusCodeStats: Record<string, { count: number }> }).statusCodeStats,
    ).map(([code, { count }]) => [code, count]),
  );

/**
 * Seeds tenant A with FLOOD_MESSAGES messages that all contain FLOOD_WORD (a search for it
 * ranks every one of them: an expensive read), straight in the database and kept from the
 * embedding worker, and tenant B with one short conversation through the API.
 */
async function seedFairness(ts: ServerProcess, sql: postgres.Sql) {
  const flooder = await createTenant(ts.base, 'fairness: A floods');
  const victim = await createTenant(ts.base, 'fairness: B reads');
  await sql.begin(async (tx) => {
    await tx`insert into conversations (tenant_id, id)
      select ${flooder.id}, 'flood-' || g from generate_series(0, 19) g`;
    const contents = Array.from(
      { length: FLOOD_MESSAGES },
      (_, n) => `${FLOOD_WORD} ${sentence(n)}`,
    );
    await tx`
      insert into messages (id, tenant_id, conversation_id, role, content, created_at)
      select gen_random_uuid(), ${flooder.id}, 'flood-' || (n % 20), 'user', content,
        now() - make_interval(secs => n::int)
      from unnest(${contents}::text[]) with ordinality as u(content, n)`;
    // Full-text search is what is measured; the embedding worker stays out of it.
    await tx`update message_search set embedding_status = 'disabled'
      where tenant_id = ${flooder.id}`;
  });
  await api(
    ts.base,
    'POST',
    '/v1/messages/batch',
    victim.api_key,
    {
      messages: Array.from({ length: 50 }, (_, i) => ({
        conversation_id: 'b',
        role: i % 2 ? 'assistant' : 'user',
        content: sentence(i),
      })),
    },
    201,
  );
  await embeddingBacklogDrained(sql);
  await sql`analyze messages, message_search`;
  return { flooder, victim };
}

/** Waits until no statement of threadstore runs on the server (at most 15 s). */
async function databaseQuiet(sql: postgres.Sql): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    const [row] = await sql<{ n: number }[]>`
      select count(*)::int as n from pg_stat_activity
      where application_name = 'threadstore' and state <> 'idle'`;
    if (row!.n === 0) return;
    await Bun.sleep(100);
  }
}

/**
 * Fairness of the database pool between tenants: tenant B's p99 on a cheap read (a page of 20
 * messages) alone, then while tenant A floods full-text searches that rank 20,000 messages
 * each at 128 connections; then B's reads alone at 256 connections, which must see no refusal
 * (a tenant alone takes the whole pool).
 */
export async function fairness(
  ts: ServerProcess,
  sql: postgres.Sql,
  seconds: number,
): Promise<FairnessResult> {
  const { flooder, victim } = await seedFairness(ts, sql);
  const cheap: autocannon.Options = {
    url: `${ts.base}/v1/messages?conversation_id=b&limit=20`,
    headers: { authorization: `Bearer ${victim.api_key}` },
    connections: VICTIM_CONNECTIONS,
    duration: seconds,
  };
  const expensive = (connections: number, duration: number): autocannon.Options => ({
    url: `${ts.base}/v1/search`,
    method: 'POST',
    headers: {
      authorization: `Bearer ${flooder.api_key}`,
      'content-type': 'application/json',
    },
    body: JSON.stringify({ query: FLOOD_WORD, mode: 'fulltext', limit: 10 }),
    connections,
    duration,
  });
  // Warm: both keys cached, connections open, plans made.
  await load(ts, { scenario: 'fairness warm-up' }, { ...cheap, duration: 2 });
  await load(ts, { scenario: 'fairness warm-up' }, expensive(16, 2));

  const unloaded = await load(ts, { scenario: 'fairness: B alone' }, cheap);
  // A's flood starts first and outlasts B's run on both sides.
  const flooding = load(
    ts,
    { scenario: 'fairness: A floods' },
    expensive(FLOOD_CONNECTIONS, seconds + 2),
  );
  await Bun.sleep(1000);
  const loaded = await load(ts, { scenario: 'fairness: B under the flood' }, cheap);
  const flood = await flooding;
  // The flood's requests still queued in the server finish (or time out) before B goes alone.
  await databaseQuiet(sql);
  // A lone tenant takes the whole pool: 256 connections of reads, none refused.
  const alone = await load(
    ts,
    { scenario: 'fairness: B alone' },
    { ...cheap, connections: ALONE_CONNECTIONS },
  );
  const strip = ({ raw: _raw, ...run }: Run & { raw: autocannon.Result }): Run => run;
  return {
    unloaded: strip(unloaded),
    loaded: strip(loaded),
    flood: strip(flood),
    alone: strip(alone),
    p99Ratio: loaded.latency.p99 / Math.max(unloaded.latency.p99, 1),
    floodStatuses: statusesOf(flood.raw),
    aloneStatuses: statusesOf(alone.raw),
    victimStatuses: statusesOf(loaded.raw),
  };
}
