import { createApp } from './app';
import type { Config } from './config';
import { openDatabase } from './db/client';
import { migrate } from './db/migrate';
import { ensureSearch } from './db/search-setup';
import type { DatabaseHandle } from './db/types';
import { type AppDeps, createDeps, fullTextOnly } from './deps';
import { EmbeddingClient } from './embeddings/client';
import type { Logger } from './logger';
import { createFetchHandler } from './transport';

/**
 * Opens the database and applies pending migrations (unless `migrateFirst` is false), logging
 * how many were applied. Every command starts here: `serve`, the one-shot commands and the
 * test harness.
 */
export async function openMigrated(
  config: Config,
  logger: Logger,
  migrateFirst = true,
): Promise<DatabaseHandle> {
  const database = await openDatabase(config, logger);
  if (!migrateFirst) return database;
  try {
    const applied = await migrate(database);
    logger.info({ applied }, 'migrations up to date');
  } catch (err) {
    await database.close();
    throw err;
  }
  return database;
}

/** Runs `fn` on a migrated database and closes it afterwards: the one-shot commands. */
export async function withMigratedDatabase<T>(
  config: Config,
  logger: Logger,
  fn: (database: DatabaseHandle) => Promise<T>,
): Promise<T> {
  const database = await openMigrated(config, logger);
  try {
    return await fn(database);
  } finally {
    await database.close();
  }
}

/** The application over an open database, as `serve` runs it and the tests drive it. */
export interface Application {
  deps: AppDeps;
  app: ReturnType<typeof createApp>;
  /** The HTTP entry point (transport, timeout, then the app). */
  handler: ReturnType<typeof createFetchHandler>;
}

/**
 * Builds the application over `database`: sets search up (vectors, text configuration; skipped
 * with `setupSearch: false`, for a database that is down), the embedding client when semantic
 * search is possible, the dependencies, the app and its fetch handler.
 */
export async function buildApplication(
  config: Config,
  logger: Logger,
  database: DatabaseHandle,
  setupSearch = true,
): Promise<Application> {
  const search = setupSearch ? await ensureSearch(database, config, logger) : fullTextOnly(config);
  const embedder = search.semantic ? new EmbeddingClient(config) : null;
  if (config.EMBEDDING_URL && setupSearch && !search.semantic) {
    logger.warn({ reason: search.semanticReason }, 'semantic search unavailable; full-text only');
  }
  const deps = createDeps(config, logger, database, search, embedder);
  const app = createApp(deps);
  return { deps, app, handler: createFetchHandler(app, deps) };
}
