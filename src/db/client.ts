import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import type { Config } from '../config';
import type { Logger } from '../logger';
import * as schema from './schema';
import type { Database, DatabaseHandle } from './types';

/**
 * Opens the configured database: PostgreSQL through postgres.js when DATABASE_URL is set,
 * otherwise the embedded PGlite database under DATA_DIR.
 */
export async function openDatabase(config: Config, logger: Logger): Promise<DatabaseHandle> {
  if (!config.DATABASE_URL) {
    const { openPglite } = await import('./pglite');
    return openPglite(config.DATA_DIR, logger);
  }
  return openPostgres(config);
}

function openPostgres(config: Config): DatabaseHandle {
  const sql = postgres(config.DATABASE_URL!, {
    max: config.DB_POOL_MAX,
    connect_timeout: config.DB_CONNECT_TIMEOUT_MS / 1000,
    idle_timeout: 60,
    max_lifetime: 60 * 30,
    onnotice: () => {},
    connection: {
      application_name: 'threadstore',
      statement_timeout: config.DB_STATEMENT_TIMEOUT_MS,
    },
  });
  const db = drizzle(sql, { schema }) as unknown as Database;
  return {
    kind: 'postgres',
    db,
    async ping() {
      await sql`select 1`;
    },
    async withAdvisoryLock(key, fn) {
      // The lock is held by one reserved connection while the work runs on the pool.
      const conn = await sql.reserve();
      try {
        await conn`select pg_advisory_lock(${key.toString()}::bigint)`;
        try {
          return await fn();
        } finally {
          await conn`select pg_advisory_unlock(${key.toString()}::bigint)`;
        }
      } finally {
        conn.release();
      }
    },
    async close() {
      await sql.end({ timeout: 5 });
    },
  };
}
