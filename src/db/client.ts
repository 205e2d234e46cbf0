import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { listenPostgres, type Subscription } from './listener';
import { currentRequestState } from '../lib/request-state';
import { gatedClient, PoolGate } from './pool-gate';
import * as schema from './schema';
import type { Database, DatabaseHandle } from './types';

/**
 * Longest wait, in seconds, before a pooled connection that failed is opened again. A query sent
 * to such a connection waits for it, then fails. postgres.js grows the wait as 3^failures / 100 s
 * up to 20 s, counting failures across the whole pool: a few seconds of outage under load put
 * every connection 20 s away, so requests waited out REQUEST_TIMEOUT_MS instead of getting a
 * prompt 503, and the service stayed down for up to 20 s after the database was back. Connection
 * attempts to a down server are cheap (refused at once), so a short cap costs little.
 */
const RECONNECT_MAX_DELAY_SECONDS = 0.25;

/** postgres.js's jittered exponential reconnect delay, capped at RECONNECT_MAX_DELAY_SECONDS. */
function reconnectDelay(failures: number): number {
  return Math.min(RECONNECT_MAX_DELAY_SECONDS, ((0.5 + Math.random() / 2) * 3 ** failures) / 100);
}

/**
 * Opens the configured database: PostgreSQL through postgres.js when DATABASE_URL is set,
 * otherwise the embedded PGlite database under DATA_DIR.
 */
export async function openDatabase(config: Config, logger: Logger): Promise<DatabaseHandle> {
  if (!config.DATABASE_URL) {
    const { openPglite } = await import('./pglite');
    return openPglite(config.DATA_DIR, logger);
  }
  return openPostgres(config, config.DATABASE_URL, logger);
}

function openPostgres(config: Config, url: string, logger: Logger): DatabaseHandle {
  const sql = postgres(url, {
    max: config.DB_POOL_MAX,
    connect_timeout: config.DB_CONNECT_TIMEOUT_MS / 1000,
    idle_timeout: 60,
    max_lifetime: 60 * 30,
    backoff: reconnectDelay,
    onnotice: () => {},
    connection: {
      application_name: 'threadstore',
      statement_timeout: config.DB_STATEMENT_TIMEOUT_MS,
    },
  });
  const gate = new PoolGate(
    config.DB_POOL_MAX,
    config.DB_POOL_ACQUIRE_TIMEOUT_MS,
    config.DB_PIPELINE_DEPTH,
    // The current request's tenant and deadline: fair shares, and no work past the timeout.
    { queueMax: config.DB_POOL_QUEUE_MAX, scope: currentRequestState },
  );
  const gated = gatedClient(sql, gate);
  const db = drizzle(gated, { schema }) as unknown as Database;
  const subscriptions = new Set<Subscription>();
  /**
   * Runs `work` on a session of its own, ended afterwards: ending it releases any advisory lock
   * it took, even when the work failed mid-transaction. Not a pooled connection: with
   * DB_POOL_MAX=1 the pool's only connection would hold the lock while the work waited for a
   * free one, forever; and it escapes DB_STATEMENT_TIMEOUT_MS, which is meant for requests:
   * neither waiting for another instance's migration nor a long migration or retention run
   * should be cut off by it.
   */
  async function onLockSession<T>(
    applicationName: string,
    work: (conn: postgres.Sql) => Promise<T>,
  ): Promise<T> {
    const conn = postgres(url, {
      max: 1,
      connect_timeout: config.DB_CONNECT_TIMEOUT_MS / 1000,
      onnotice: () => {},
      connection: { application_name: applicationName },
    });
    try {
      return await work(conn);
    } finally {
      await conn.end({ timeout: 5 });
    }
  }
  return {
    kind: 'postgres',
    db,
    async ping() {
      await gated.unsafe('select 1');
    },
    poolStats: () => gate.stats(),
    withAdvisoryLock: (key, fn) =>
      onLockSession('threadstore-lock', async (conn) => {
        await conn`select pg_advisory_lock(${key.toString()}::bigint)`;
        return fn(drizzle(conn, { schema }) as unknown as Database);
      }),
    tryAdvisoryLock: (key, applicationName, fn) =>
      onLockSession(applicationName, async (conn) => {
        const [row] = await conn<{ locked: boolean }[]>`
          select pg_try_advisory_lock(${key.toString()}::bigint) as locked`;
        if (!row?.locked) return { acquired: false as const };
        return {
          acquired: true as const,
          value: await fn(drizzle(conn, { schema }) as unknown as Database),
        };
      }),
    listen(channel, handlers) {
      const subscription = listenPostgres(url, config, logger, channel, handlers);
      subscriptions.add(subscription);
      return {
        async close() {
          subscriptions.delete(subscription);
          await subscription.close();
        },
      };
    },
    async close() {
      await Promise.all([...subscriptions].map((s) => s.close()));
      subscriptions.clear();
      await sql.end({ timeout: 5 });
    },
  };
}
