import { eq, gte, lt, type SQL, sql } from 'drizzle-orm';
import { messages } from '../../db/schema';
import { EmbeddingsUnavailableError, type QueryEmbedder } from '../../embeddings/types';
import { AppError, validationFailed } from '../../lib/errors';
import { parseRequestTime } from '../../lib/time';
import type { MessageView } from '../messages/model';
import { toMessageView } from '../messages/service';
import { fullTextList, type Hit, type SearchContext, semanticList } from './lists';
import {
  type MatchKind,
  SEARCH_LIMITS,
  type SearchInput,
  type SearchMode,
  type SearchResponseView,
  type SearchResultView,
} from './model';

/** Reciprocal rank fusion constant: 1 / (k + rank), the value of the original paper. */
const RRF_K = 60;
/** Each list of a hybrid search fetches this many times `limit`, so fusion has depth. */
const HYBRID_OVERFETCH = 3;

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
  const after =
    input.createdAfter === undefined ? undefined : toDate(input.createdAfter, 'created_after');
  const before =
    input.createdBefore === undefined ? undefined : toDate(input.createdBefore, 'created_before');
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

function toDate(value: string, field: string): Date {
  // The schema checked the format; this guards against times Date or PostgreSQL cannot hold.
  const date = parseRequestTime(value);
  if (date === null) {
    throw validationFailed(`Invalid ${field}`, [
      { in: 'body', path: `/${field}`, message: 'Not a valid date-time' },
    ]);
  }
  return date;
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
