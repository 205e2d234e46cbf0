import { type Static, Type } from '@sinclair/typebox';
import { t } from 'elysia';
import { DateTimeInput } from '../../lib/schemas';
import { ConversationId, MESSAGE_LIMITS, type MessageModels } from '../messages/model';

/** Limits and defaults of a search request; the schema and the service both read them. */
export const SEARCH_LIMITS = {
  queryMaxChars: 2000,
  limitMax: 50,
  limitDefault: 10,
  metadataMaxBytes: MESSAGE_LIMITS.metadataMaxBytes,
} as const;

export const searchModes = ['hybrid', 'semantic', 'fulltext'] as const;
export type SearchMode = (typeof searchModes)[number];

/** Which ranked list found a result. */
export const matchKinds = ['fulltext', 'semantic'] as const;
export type MatchKind = (typeof matchKinds)[number];

// Spelled out (not mapped from the lists above) so that Elysia infers unions of literals.
const Mode = (options: { default?: SearchMode; description: string }) =>
  t.Union([t.Literal('hybrid'), t.Literal('semantic'), t.Literal('fulltext')], options);
const Matched = t.Union([t.Literal('fulltext'), t.Literal('semantic')]);

/**
 * Body of POST /v1/search. Numbers and booleans use TypeBox's own types: Elysia's `t.Integer`
 * and `t.Boolean` also accept numeric and boolean strings, which a JSON body has no reason to send.
 */
export const SearchRequest = t.Object(
  {
    query: t.String({
      minLength: 1,
      maxLength: SEARCH_LIMITS.queryMaxChars,
      // At least one visible character: a blank query matches nothing in any mode.
      pattern: '\\S',
      description:
        'What to look for, 1 to 2000 characters. Full-text search reads it as a web search ' +
        'query: words are ANDed, "quoted phrases" match in order, `or` between words, `-word` excludes.',
    }),
    mode: t.Optional(
      Mode({
        default: 'hybrid',
        description:
          '`fulltext`: words, ranked by ts_rank_cd. `semantic`: meaning, by cosine similarity ' +
          'of embeddings. `hybrid` (default): both lists fused by reciprocal rank.',
      }),
    ),
    conversation_id: t.Optional(ConversationId),
    limit: t.Optional(
      Type.Integer({
        minimum: 1,
        maximum: SEARCH_LIMITS.limitMax,
        default: SEARCH_LIMITS.limitDefault,
        description: `Results wanted, 1 to ${SEARCH_LIMITS.limitMax}`,
      }),
    ),
    include_archived: t.Optional(
      Type.Boolean({ default: false, description: 'Also search archived messages' }),
    ),
    created_after: t.Optional(
      DateTimeInput('Only messages created at or after this time (inclusive)'),
    ),
    created_before: t.Optional(DateTimeInput('Only messages created before this time (exclusive)')),
    metadata: t.Optional(
      t.Object(
        {},
        {
          additionalProperties: true,
          description:
            'Only messages whose metadata contains this object (JSON containment, `@>`): ' +
            '`{"source": "web"}` matches metadata with that key and value, whatever else it holds',
        },
      ),
    ),
  },
  { additionalProperties: false },
);

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

/** A search request with its defaults applied, as the service takes it. */
export function searchInputOf(body: Static<typeof SearchRequest>): SearchInput {
  return {
    query: body.query,
    mode: body.mode ?? 'hybrid',
    limit: body.limit ?? SEARCH_LIMITS.limitDefault,
    includeArchived: body.include_archived ?? false,
    conversationId: body.conversation_id,
    createdAfter: body.created_after,
    createdBefore: body.created_before,
    metadata: body.metadata,
  };
}

/** Response schemas; they embed the message schema, which is built at start-up. */
export function searchModels(messageModels: MessageModels) {
  const SearchResult = t.Object({
    message: messageModels.Message,
    score: t.Number({
      description:
        'Higher is better; comparable only within one response. fulltext: ts_rank_cd; ' +
        'semantic: 1 - cosine distance; hybrid: sum of 1 / (60 + rank) over the lists that found it',
    }),
    matched: t.Array(Matched, { description: 'The lists that found this message' }),
  });
  return {
    SearchResult,
    SearchResponse: t.Object({
      results: t.Array(SearchResult),
      mode: Mode({
        description:
          'The mode that ran: `fulltext` when hybrid was asked for but semantic search is not ' +
          'configured or the embedding service is down',
      }),
      degraded: t.Boolean({
        description: 'True when hybrid fell back to full-text because embeddings were unavailable',
      }),
    }),
  };
}

export type SearchModels = ReturnType<typeof searchModels>;
/** One result as the API shows it. */
export type SearchResultView = Static<SearchModels['SearchResult']>;
/** The answer to POST /v1/search; `mode` is the mode that ran. */
export type SearchResponseView = Static<SearchModels['SearchResponse']>;
