import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import type { ChannelHandlers, Subscription } from './listener';
import type { PoolStats } from './pool-gate';
import type * as schema from './schema';

/** Drizzle database over either driver (postgres.js or PGlite); services take this. */
export type Database = PgDatabase<PgQueryResultHKT, typeof schema>;

/** What a try-lock gives: the work's value, or nothing when another session holds the lock. */
export type TryLockResult<T> = { acquired: true; value: T } | { acquired: false };

/** The open database and what the process needs to manage it. */
export interface DatabaseHandle {
  kind: 'postgres' | 'pglite';
  db: Database;
  /** Resolves when the server answers a trivial query. */
  ping(): Promise<void>;
  /**
   * Runs `fn` while holding a session-level advisory lock, so only one process runs it at a time.
   * `fn` must do its work through the `db` it is given: that is the connection holding the lock.
   */
  withAdvisoryLock<T>(key: bigint, fn: (db: Database) => Promise<T>): Promise<T>;
  /**
   * Runs `fn` only if the advisory lock `key` is free right now, never waiting for it, on a
   * session of its own named `applicationName` (what pg_stat_activity shows). The embedded
   * database has one process: there is nobody to exclude, and `fn` just runs.
   */
  tryAdvisoryLock<T>(
    key: bigint,
    applicationName: string,
    fn: (db: Database) => Promise<T>,
  ): Promise<TryLockResult<T>>;
  /** Connections in use and requests waiting for one (the embedded database has one). */
  poolStats(): PoolStats;
  /**
   * Subscribes to NOTIFY on `channel` for as long as the database is open, reconnecting by
   * itself. The embedded database is only ever open in one process, which sends every
   * notification itself: there, the subscription reports `listening` at once and stays quiet.
   */
  listen(channel: string, handlers: ChannelHandlers): Subscription;
  /** Ends subscriptions and closes the connections. */
  close(): Promise<void>;
}
