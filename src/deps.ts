import type { Config } from './config';
import type { Database, DatabaseHandle } from './db/types';
import { CursorCodec } from './lib/cursor';
import type { Logger } from './logger';
import { createMetrics, type Metrics } from './metrics';
import { KeyResolver } from './modules/tenants/keys';

/** Everything the app is built from; tests build it around their own database. */
export interface AppDeps {
  config: Config;
  logger: Logger;
  database: DatabaseHandle;
  db: Database;
  cursors: CursorCodec;
  keys: KeyResolver;
  metrics: Metrics;
  /** When the process started (for uptime in health). */
  startedAt: Date;
  /** Set when shutdown begins: readiness turns 503 at once. */
  lifecycle: { shuttingDown: boolean };
}

export function createDeps(config: Config, logger: Logger, database: DatabaseHandle): AppDeps {
  return {
    config,
    logger,
    database,
    db: database.db,
    cursors: new CursorCodec(config.CURSOR_SECRET),
    keys: new KeyResolver(database.db, config.AUTH_CACHE_TTL_MS),
    metrics: createMetrics(database),
    startedAt: new Date(),
    lifecycle: { shuttingDown: false },
  };
}
