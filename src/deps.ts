import type { Config } from './config';
import type { Database, DatabaseHandle } from './db/types';
import type { EmbeddingClient } from './embeddings/client';
import type { SearchCapabilities } from './embeddings/types';
import { CursorCodec } from './lib/cursor';
import type { Logger } from './logger';
import { createMetrics, type Metrics } from './metrics';
import { KeyResolver } from './auth/resolver';
import { RedisRateLimitStore } from './plugins/rate-limit-redis';

/** Everything the app is built from; tests build it around their own database. */
export interface AppDeps {
  config: Config;
  logger: Logger;
  database: DatabaseHandle;
  db: Database;
  cursors: CursorCodec;
  keys: KeyResolver;
  metrics: Metrics;
  /** What search can do here (decided at start-up by ensureSearch). */
  search: SearchCapabilities;
  /** The resilient embedding client (search queries, health); null when semantic search is off. */
  embedder: EmbeddingClient | null;
  /** When the process started (for uptime in health). */
  startedAt: Date;
  /**
   * Rate-limit counters in Redis, shared by every instance (REDIS_URL); null: each process counts
   * in memory. One per process: the caller closes it (kill) on shutdown.
   */
  rateLimitStore: RedisRateLimitStore | null;
  /** Set when shutdown begins: readiness turns 503 at once. */
  lifecycle: { shuttingDown: boolean };
}

/** Search as it is without ensureSearch: full-text only. */
export function fullTextOnly(config: Config): SearchCapabilities {
  return {
    language: config.SEARCH_LANGUAGE,
    embeddingsEnabled: false,
    semantic: false,
    semanticReason: 'embeddings are not configured (EMBEDDING_URL)',
    dimensions: config.EMBEDDING_DIMENSIONS,
  };
}

export function createDeps(
  config: Config,
  logger: Logger,
  database: DatabaseHandle,
  search: SearchCapabilities = fullTextOnly(config),
  embedder: EmbeddingClient | null = null,
): AppDeps {
  const metrics = createMetrics(database);
  if (embedder) metrics.observeEmbeddings(embedder, database.db);
  const keys = new KeyResolver(database.db, config.AUTH_CACHE_TTL_MS);
  // Ended with the database (its `close`).
  keys.follow(database);
  metrics.observeKeys(keys);
  return {
    config,
    logger,
    database,
    db: database.db,
    cursors: new CursorCodec(config.CURSOR_SECRET),
    keys,
    metrics,
    search,
    embedder,
    rateLimitStore:
      config.REDIS_URL && config.RATE_LIMIT_ENABLED
        ? new RedisRateLimitStore(config.REDIS_URL, { timeoutMs: config.REDIS_TIMEOUT_MS, logger })
        : null,
    startedAt: new Date(),
    lifecycle: { shuttingDown: false },
  };
}
