import { and, desc, eq, gte, lt, type SQL, sql } from 'drizzle-orm';
import { rowsOf } from '../../db/migrate';
import { type MessageRow, messageSearch, messages } from '../../db/schema';
import type { Database } from '../../db/types';
import {
  EmbeddingsUnavailableError,
  type QueryEmbedder,
  type SearchCapabilities,
  vectorLiteral,
} from '../../embeddings/types';
import { AppError, validationFailed } from '../../lib/errors';
import { type EmbeddingInfo, type MessageView, toMessageView } from '../messages/service';
import { type MatchKind, SEARCH_LIMITS, type SearchMode } from './model';

/** Reciprocal rank fusion constant: 1 / (k + rank), the value of the original paper. */
const RRF_K = 60;
/** Each list of a hybrid search fetches this many times `limit`, so fusion has depth. */
const HYBRID_OVERFETCH = 3;
/**
 * A semantic search whose filters leave at most this many messages is exact: it computes the
 * distance to each of them instead of walking the HNSW index. See `semanticList` for why.
 */
export const EXACT_SEARCH_MAX_ROWS = 5000;
/** Index tuples an iterative HNSW scan may visit before it gives up (pgvector's default). */
const HNSW_MAX_SCAN_TUPLES = 20_000;
/** pgvector's default candidate list; raised to `k` when more results are wanted. */
const HNSW_EF_SEARCH_MIN = 40;

/** A validated search request (the body of POST /v1/search with defaults applied). */
export interface SearchInput {
  query: string;
  mode: SearchMode;
  limit: number;
  includeArchived: boolean;
  conversationId?: string;
  createdAfter?: string;
  createdBefore?: string;
  metadata?: Record<string, unknown>;
}

export interface SearchResultView {
  message: MessageView;
  score: number;
  matched: MatchKind[];
}

export interface SearchResponseView {
  results: SearchResultView[];
  mode: SearchMode;
  degraded: boolean;
}

/** What a search runs against: the database, what search can do here, the query embedder. */
export interface SearchContext {
  db: Database;
  search: SearchCapabilities;
  embedder: QueryEmbedder | null;
  /** Overrides EXACT_SEARCH_MAX_ROWS (tests use it to reach the index path on small data). */
  exactSearchMaxRows?: number;
}

interface Hit {
  row: MessageRow;
  embedding: EmbeddingInfo;
  score: number;
}

/** What every list selects: the message, its embedding state (for the view) and a score. */
function hitColumns(score: SQL.Aliased<number> | SQL<number>) {
  return {
    row: messages,
    embedding: { status: messageSearch.embeddingStatus, error: messageSearch.embeddingError },
    score,
  };
}

/**
 * Searches one tenant's messages. Hybrid fuses the full-text and semantic lists by reciprocal
 * rank; it runs as full-text when semantic search is not configured, and degrades to full-text
 * (`degraded: true`) when the embedding service cannot answer. Semantic-only requests fail
 * instead: 422 when not configured, 503 with Retry-After when the service is down.
 */
export async function searchMessages(
  ctx: SearchContext,
  tenantId: string,
  input: SearchInput,
): Promise<SearchResponseView> {
  const filters = filtersOf(tenantId, input);
  const semanticReady = ctx.search.semantic && ctx.embedder !== null;

  if (input.mode === 'fulltext' || (input.mode === 'hybrid' && !semanticReady)) {
    const hits = await fullTextList(ctx, tenantId, input.query, filters, input.limit);
    return { results: single(hits, 'fulltext'), mode: 'fulltext', degraded: false };
  }
  if (!semanticReady) {
    throw new AppError(
      422,
      'semantic_search_disabled',
      `Semantic search is not available: ${ctx.search.semanticReason ?? 'no query embedder'}. ` +
        'Use mode "fulltext" (or "hybrid", which runs as full-text here).',
    );
  }
  if (input.mode === 'semantic') {
    const vector = await embedOrThrow(ctx.embedder!, input.query);
    const hits = await semanticList(ctx, tenantId, vector, filters, input.limit);
    return { results: single(hits, 'semantic'), mode: 'semantic', degraded: false };
  }

  // Hybrid: the full-text list runs while the query is being embedded.
  const depth = input.limit * HYBRID_OVERFETCH;
  const fullText = fullTextList(ctx, tenantId, input.query, filters, depth);
  fullText.catch(() => {}); // awaited below; this only stops an early rejection going unhandled
  let vector: number[];
  try {
    vector = await ctx.embedder!.embedQuery(input.query);
  } catch (err) {
    if (!(err instanceof EmbeddingsUnavailableError)) throw err;
    const hits = (await fullText).slice(0, input.limit);
    return { results: single(hits, 'fulltext'), mode: 'fulltext', degraded: true };
  }
  const semantic = await semanticList(ctx, tenantId, vector, filters, depth);
  return {
    results: fuse(await fullText, semantic).slice(0, input.limit),
    mode: 'hybrid',
    degraded: false,
  };
}

async function embedOrThrow(embedder: QueryEmbedder, query: string): Promise<number[]> {
  try {
    return await embedder.embedQuery(query);
  } catch (err) {
    if (!(err instanceof EmbeddingsUnavailableError)) throw err;
    const retryAfter = Math.max(1, Math.ceil(err.retryAfterSeconds));
    const unavailable = new AppError(
      503,
      'embeddings_unavailable',
      `The embedding service is unavailable; retry in ${retryAfter} s, or search with mode "fulltext"`,
      undefined,
      { 'retry-after': String(retryAfter) },
    );
    // The error plugin logs the cause of a 5xx: the provider's failure, not our summary.
    unavailable.cause = err;
    throw unavailable;
  }
}

/** Conditions on `messages` every mode applies; the tenant always comes first. */
function filtersOf(tenantId: string, input: SearchInput): SQL[] {
  const after = input.createdAfter === undefined ? undefined : toDate(input.createdAfter);
  const before = input.createdBefore === undefined ? undefined : toDate(input.createdBefore);
  if (after && before && after >= before) {
    throw validationFailed('created_after must be earlier than created_before', [
      { in: 'body', path: '/created_after', message: 'Earlier than created_before' },
    ]);
  }
  if (
    input.metadata !== undefined &&
    Buffer.byteLength(JSON.stringify(input.metadata)) > SEARCH_LIMITS.metadataMaxBytes
  ) {
    throw validationFailed('metadata is too large', [
      {
        in: 'body',
        path: '/metadata',
        message: `At most ${SEARCH_LIMITS.metadataMaxBytes} bytes serialised`,
      },
    ]);
  }
  const conditions: (SQL | undefined)[] = [
    eq(messages.tenantId, tenantId),
    input.includeArchived ? undefined : eq(messages.archived, false),
    input.conversationId === undefined
      ? undefined
      : eq(messages.conversationId, input.conversationId),
    after && gte(messages.createdAt, after),
    before && lt(messages.createdAt, before),
    input.metadata === undefined
      ? undefined
      : sql`${messages.metadata} @> ${JSON.stringify(input.metadata)}::jsonb`,
  ];
  return conditions.filter((c): c is SQL => c !== undefined);
}

function toDate(value: string): Date {
  // The schema checked the format; this only guards against what Date cannot represent.
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) {
    throw validationFailed('Invalid date-time', [
      { in: 'body', path: '', message: `Not a valid date-time: ${value}` },
    ]);
  }
  return date;
}

/**
 * Messages matching `websearch_to_tsquery(language, query)`, best ts_rank_cd first. The match
 * is on `message_search.tsv` (GIN index); the tenant is checked on both tables, so the planner
 * may start from either the GIN index or the tenant's messages, whichever is more selective.
 */
async function fullTextList(
  { db, search }: SearchContext,
  tenantId: string,
  query: string,
  filters: SQL[],
  k: number,
): Promise<Hit[]> {
  const tsquery = sql`websearch_to_tsquery(${search.language}::regconfig, ${query})`;
  const score = sql<number>`ts_rank_cd(${messageSearch.tsv}, ${tsquery})`.mapWith(Number);
  const rows = await db
    .select(hitColumns(score))
    .from(messageSearch)
    .innerJoin(messages, eq(messages.id, messageSearch.messageId))
    .where(
      and(
        eq(messageSearch.tenantId, tenantId),
        sql`${messageSearch.tsv} @@ ${tsquery}`,
        ...filters,
      ),
    )
    .orderBy(desc(score), desc(messages.createdAt), desc(messages.id))
    .limit(k);
  return rows;
}

/**
 * The `k` messages nearest to `vector` by cosine distance, among those with an embedding.
 *
 * Filters must not starve the result. An HNSW scan returns the `hnsw.ef_search` nearest rows of
 * the whole table and filters them afterwards: a tenant with few messages among many others' got
 * nothing. Two paths, chosen by a capped count of the messages the filters leave:
 * - at most EXACT_SEARCH_MAX_ROWS: exact search (distance to each of them, top-k sort). Complete
 *   by construction, and cheap at that size through the tenant's and conversation's indexes.
 * - more: the HNSW index with pgvector 0.8's iterative scan (`relaxed_order`), which keeps
 *   walking the graph until `k` rows pass the filters or HNSW_MAX_SCAN_TUPLES were visited.
 *   Since the filters match more than EXACT_SEARCH_MAX_ROWS rows, that bound is only reached
 *   when they are a very small fraction of a very large table.
 * Measurements are in the README ("Search").
 */
async function semanticList(
  { db, search, exactSearchMaxRows = EXACT_SEARCH_MAX_ROWS }: SearchContext,
  tenantId: string,
  vector: number[],
  filters: SQL[],
  k: number,
): Promise<Hit[]> {
  const v = sql`${vectorLiteral(vector)}::vector`;
  const embedding = sql`"message_search"."embedding"`;
  const score = sql<number>`1 - (${embedding} <=> ${v})`.mapWith(Number);
  const ready = and(eq(messageSearch.embeddingStatus, 'ready'), sql`${embedding} is not null`);

  const counted = rowsOf<{ n: number }>(
    await db.execute(sql`select count(*)::int as n from (
      select 1 from ${messages} where ${and(...filters)} limit ${exactSearchMaxRows + 1}) c`),
  );
  if (Number(counted[0]?.n ?? 0) <= exactSearchMaxRows) {
    // Ordered by the score, not by `embedding <=> v`: the HNSW index can only serve the latter,
    // so this can never turn into the approximate, filter-starved index scan.
    return db
      .select(hitColumns(score))
      .from(messages)
      .innerJoin(messageSearch, eq(messageSearch.messageId, messages.id))
      .where(and(...filters, ready))
      .orderBy(desc(score), desc(messages.id))
      .limit(k);
  }

  return db.transaction(async (tx) => {
    // Transaction-local settings (set_config's third argument): the pooled connection goes
    // back unchanged.
    await tx.execute(
      sql`select set_config('hnsw.ef_search', ${String(Math.max(HNSW_EF_SEARCH_MIN, k))}, true)`,
    );
    if (supportsIterativeScan(search.pgvector)) {
      await tx.execute(sql`select set_config('hnsw.iterative_scan', 'relaxed_order', true),
        set_config('hnsw.max_scan_tuples', ${String(HNSW_MAX_SCAN_TUPLES)}, true)`);
    }
    const rows = await tx
      .select(hitColumns(score))
      .from(messageSearch)
      .innerJoin(messages, eq(messages.id, messageSearch.messageId))
      .where(and(eq(messageSearch.tenantId, tenantId), ready, ...filters))
      .orderBy(sql`${embedding} <=> ${v}`)
      .limit(k);
    // relaxed_order returns rows nearly, not exactly, in order.
    return rows.sort((a, b) => b.score - a.score);
  });
}

/** pgvector 0.8.0 added iterative index scans (`hnsw.iterative_scan`). */
function supportsIterativeScan(version: string | undefined): boolean {
  if (!version) return false;
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 0 || minor >= 8;
}

function single(hits: Hit[], kind: MatchKind): SearchResultView[] {
  return hits.map((h) => ({
    message: toMessageView(h.row, h.embedding),
    score: h.score,
    matched: [kind],
  }));
}

/**
 * Reciprocal rank fusion: each list adds 1 / (RRF_K + rank) to the messages it found (rank from
 * 1). Rank-based, so the lists' incomparable scores (ts_rank_cd and cosine similarity) never
 * have to be put on one scale. Ties go to the newer message.
 */
function fuse(fullText: Hit[], semantic: Hit[]): SearchResultView[] {
  const fused = new Map<string, Hit & { matched: MatchKind[] }>();
  const add = (hits: Hit[], kind: MatchKind) => {
    hits.forEach((hit, index) => {
      const entry = fused.get(hit.row.id) ?? { ...hit, score: 0, matched: [] };
      entry.score += 1 / (RRF_K + index + 1);
      entry.matched.push(kind);
      fused.set(hit.row.id, entry);
    });
  };
  add(fullText, 'fulltext');
  add(semantic, 'semantic');
  return [...fused.values()]
    .sort((a, b) => b.score - a.score || (a.row.id < b.row.id ? 1 : -1))
    .map((e) => ({
      message: toMessageView(e.row, e.embedding),
      score: e.score,
      matched: e.matched,
    }));
}
