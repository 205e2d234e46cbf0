import { and, desc, eq, type SQL, sql } from 'drizzle-orm';
import { type MessageRow, messageSearch, messages } from '../../db/schema';
import type { Database } from '../../db/types';
import { vectorLiteral } from '../../embeddings/types';
import type { EmbeddingInfo } from '../messages/service';
import type { QueryEmbedder, SearchCapabilities } from '../../embeddings/types';

/** What a search runs against: the database, what search can do here, the query embedder. */
export interface SearchContext {
  db: Database;
  search: SearchCapabilities;
  embedder: QueryEmbedder | null;
  /** Overrides EXACT_SEARCH_MAX_ROWS (0: the index scan alone; tests and measurements). */
  exactSearchMaxRows?: number;
}

// The two ranked lists search is made of: full-text (tsvector, GIN) and semantic (pgvector,
// HNSW). Each returns the best `k` of one tenant's messages that pass the filters.

/**
 * When the index scan comes back short and the filters leave at most this many messages, they
 * are searched exactly (distance to each). See `semanticList`.
 */
export const EXACT_SEARCH_MAX_ROWS = 5000;
/** Index tuples an iterative HNSW scan may visit before it gives up (pgvector's default). */
const HNSW_MAX_SCAN_TUPLES = 20_000;
/** pgvector's default candidate list; raised to `k` when more results are wanted. */
const HNSW_EF_SEARCH_MIN = 40;

/** A message found by one list, with its embedding state (for the view) and its score. */
export interface Hit {
  row: MessageRow;
  embedding: EmbeddingInfo;
  score: number;
}

/** The columns of a Hit, for drizzle's select. */
function hitColumns(score: SQL.Aliased<number> | SQL<number>) {
  return {
    row: messages,
    embedding: { status: messageSearch.embeddingStatus, error: messageSearch.embeddingError },
    score,
  };
}

/**
 * Messages matching `websearch_to_tsquery(language, query)`, best ts_rank_cd first. The match
 * is on `message_search.tsv` (GIN index); the tenant is checked on both tables, so the planner
 * may start from either the GIN index or the tenant's messages, whichever is more selective.
 */
export async function fullTextList(
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
 * Filters must not starve the result. A plain HNSW scan yields the `hnsw.ef_search` (40) nearest
 * rows of the whole table, and the tenant and other filters are applied afterwards: a filter
 * matching a small share of the table left a page short, or empty. So:
 * 1. The HNSW index with pgvector 0.8's iterative scan (`relaxed_order`): the scan keeps walking
 *    the graph until `k` rows pass the filters, or HNSW_MAX_SCAN_TUPLES were visited. For small
 *    tenants the planner usually skips the index and sorts the tenant's rows exactly anyway.
 * 2. Only when that gives fewer than `k`: either fewer rows match, or the scan gave up. If the
 *    filters leave at most EXACT_SEARCH_MAX_ROWS messages, exact search over them: complete by
 *    construction, and cheap at that size. Beyond that (a filter matching a tiny share of a very
 *    large table, or a backlog not embedded yet) the index scan's rows stand, rather than a
 *    scan of all the tenant's messages on every query.
 * The common case costs one index scan; only short pages pay for the second statement.
 * Measurements (200k rows, 64 dimensions) are in the README's "Search" section.
 */
export async function semanticList(
  ctx: SearchContext,
  tenantId: string,
  vector: number[],
  filters: SQL[],
  k: number,
): Promise<Hit[]> {
  const nearest = await indexScan(ctx, tenantId, vector, filters, k);
  if (nearest.length >= k) return nearest;
  const exact = await exactScan(
    ctx.db,
    vector,
    filters,
    k,
    ctx.exactSearchMaxRows ?? EXACT_SEARCH_MAX_ROWS,
  );
  return exact ?? nearest;
}

const embeddingColumn = sql`"message_search"."embedding"`;
const similarity = (v: SQL) => sql<number>`1 - (${embeddingColumn} <=> ${v})`.mapWith(Number);
const embedded = and(
  eq(messageSearch.embeddingStatus, 'ready'),
  sql`${embeddingColumn} is not null`,
);

async function indexScan(
  { db, search }: SearchContext,
  tenantId: string,
  vector: number[],
  filters: SQL[],
  k: number,
): Promise<Hit[]> {
  const v = sql`${vectorLiteral(vector)}::vector`;
  return db.transaction(async (tx) => {
    // Transaction-local settings (set_config's third argument): the pooled connection goes
    // back unchanged.
    const efSearch = String(Math.max(HNSW_EF_SEARCH_MIN, k));
    await tx.execute(
      supportsIterativeScan(search.pgvector)
        ? sql`select set_config('hnsw.ef_search', ${efSearch}, true),
            set_config('hnsw.iterative_scan', 'relaxed_order', true),
            set_config('hnsw.max_scan_tuples', ${String(HNSW_MAX_SCAN_TUPLES)}, true)`
        : sql`select set_config('hnsw.ef_search', ${efSearch}, true)`,
    );
    const rows = await tx
      .select(hitColumns(similarity(v)))
      .from(messageSearch)
      .innerJoin(messages, eq(messages.id, messageSearch.messageId))
      .where(and(eq(messageSearch.tenantId, tenantId), embedded, ...filters))
      .orderBy(sql`${embeddingColumn} <=> ${v}`)
      .limit(k);
    // relaxed_order returns rows nearly, not exactly, in order.
    return rows.sort((a, b) => b.score - a.score);
  });
}

/**
 * Exact search among the messages the filters leave, or null when they leave more than
 * `maxRows`. One statement: the candidates are read once, capped, and counted.
 */
async function exactScan(
  db: Database,
  vector: number[],
  filters: SQL[],
  k: number,
  maxRows: number,
): Promise<Hit[] | null> {
  const score = similarity(sql`${vectorLiteral(vector)}::vector`);
  const candidates = db.$with('candidates').as(
    db
      .select({ id: sql<string>`${messages.id}`.as('candidate_id') })
      .from(messages)
      .where(and(...filters))
      .limit(maxRows + 1),
  );
  const rows = await db
    .with(candidates)
    .select({
      ...hitColumns(score),
      candidates: sql<number>`(select count(*) from ${candidates})`.mapWith(Number),
    })
    .from(candidates)
    .innerJoin(messages, eq(messages.id, candidates.id))
    .innerJoin(messageSearch, eq(messageSearch.messageId, candidates.id))
    .where(embedded)
    // By the score, not by `embedding <=> v`: the HNSW index can only serve the latter, so this
    // never turns back into the approximate index scan.
    .orderBy(desc(score), desc(messages.id))
    .limit(k);
  if ((rows[0]?.candidates ?? 0) > maxRows) return null;
  return rows;
}

/** pgvector 0.8.0 added iterative index scans (`hnsw.iterative_scan`). */
function supportsIterativeScan(version: string | undefined): boolean {
  if (!version) return false;
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 0 || minor >= 8;
}
