import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import type { Config } from '../../config';
import * as schema from '../../db/schema';
import type { Database, DatabaseHandle } from '../../db/types';

/** What a try-lock gives: the work's value, or nothing when another session holds the lock. */
export type TryLockResult<T> = { acquired: true; value: T } | { acquired: false };

/**
 * Runs `fn` only if the session advisory lock `key` is free right now; never waits for it.
 * On PostgreSQL the lock is held by a connection of its own, which `fn` must do its work
 * through: it is off the request pool (a long run never takes a request's connection) and free
 * of DB_STATEMENT_TIMEOUT_MS, and ending it releases the lock whatever happened. The embedded
 * database has one process, so there is nobody to exclude and `fn` just runs.
 */
export async function tryAdvisoryLock<T>(
  database: DatabaseHandle,
  config: Pick<Config, 'DATABASE_URL' | 'DB_CONNECT_TIMEOUT_MS'>,
  key: bigint,
  fn: (db: Database) => Promise<T>,
): Promise<TryLockResult<T>> {
  if (database.kind === 'pglite' || !config.DATABASE_URL) {
    return { acquired: true, value: await fn(database.db) };
  }
  const conn = postgres(config.DATABASE_URL, {
    max: 1,
    connect_timeout: config.DB_CONNECT_TIMEOUT_MS / 1000,
    onnotice: () => {},
    connection: { application_name: 'threadstore-retention' },
  });
  try {
    const [row] = await conn<{ locked: boolean }[]>`
      select pg_try_advisory_lock(${key.toString()}::bigint) as locked`;
    if (!row?.locked) return { acquired: false };
    return { acquired: true, value: await fn(drizzle(conn, { schema }) as unknown as Database) };
  } finally {
    await conn.end({ timeout: 5 });
  }
}
