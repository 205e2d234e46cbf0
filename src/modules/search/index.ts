import { Elysia } from 'elysia';
import type { AppDeps } from '../../deps';
import { commonErrors } from '../../lib/schemas';
import { tenantAuth } from '../../plugins/auth';
import { messageModels } from '../messages/model';
import { SearchRequest, searchInputOf, searchModels } from './model';
import { searchMessages } from './service';

/** Search over the calling tenant's messages: full-text, semantic, or both fused. */
export function searchModule({ db, keys, config, search, embedder }: AppDeps) {
  const m = searchModels(messageModels(config.MAX_CONTENT_CHARS));
  const ctx = { db, search, embedder };
  return new Elysia({ name: 'search', prefix: '/search', detail: { tags: ['search'] } })
    .use(tenantAuth(keys))
    .post('', ({ tenant, body }) => searchMessages(ctx, tenant.id, searchInputOf(body)), {
      // Names the media type for OpenAPI; plugins/json-body.ts parses it.
      parse: 'application/json',
      body: SearchRequest,
      response: { 200: m.SearchResponse, ...commonErrors },
      detail: {
        summary: 'Search messages by words, by meaning, or both',
        description:
          'Always within the calling tenant. `semantic` needs embeddings (EMBEDDING_URL) and ' +
          'pgvector: without them it answers 422 `semantic_search_disabled`, and `hybrid` runs ' +
          'as full-text (`mode: "fulltext"` in the answer). While the embedding service is ' +
          'down, `semantic` answers 503 `embeddings_unavailable` with Retry-After and `hybrid` ' +
          'answers full-text results with `degraded: true`. Searches spend the read rate-limit ' +
          'budget, though they are POSTs.',
        security: [{ tenantKey: [] }],
      },
    });
}
