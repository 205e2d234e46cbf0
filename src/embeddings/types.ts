/** What search can do on this database with this configuration, decided at start-up. */
export interface SearchCapabilities {
  /** PostgreSQL text search configuration used for full-text search. */
  language: string;
  /** Embeddings are configured (EMBEDDING_URL set). */
  embeddingsEnabled: boolean;
  /** Semantic search works: embeddings are configured and pgvector is on the server. */
  semantic: boolean;
  /** Why semantic search is off, for health and error messages. */
  semanticReason?: string;
  /** Installed pgvector version, if any. */
  pgvector?: string;
  dimensions: number;
}

/** The embedding service cannot answer now (breaker open, timeout, outage); retry later. */
export class EmbeddingsUnavailableError extends Error {
  override name = 'EmbeddingsUnavailableError';
  constructor(
    message: string,
    /** Seconds until a retry may succeed (the breaker's cool-down, or the provider's Retry-After). */
    readonly retryAfterSeconds: number,
  ) {
    super(message);
  }
}

/** Embeds search queries within the interactive budget (EMBEDDING_QUERY_BUDGET_MS). */
export interface QueryEmbedder {
  /** Resolves with the query's vector, or rejects with EmbeddingsUnavailableError within the budget. */
  embedQuery(text: string): Promise<number[]>;
}

/** pgvector's text form of a vector, for query parameters (`$1::vector`). */
export function vectorLiteral(v: number[]): string {
  return `[${v.join(',')}]`;
}
