import type { Config } from './config';
import { buildApplication, openMigrated, withMigratedDatabase } from './bootstrap';
import { reindexEmbeddings } from './db/search-setup';
import { EmbeddingWorker } from './embeddings/worker';
import type { AppDeps } from './deps';
import pino from 'pino';
import { createLogger, type Logger } from './logger';
import { purgeExpiredIdempotencyKeys } from './modules/messages/idempotency';
import { runRetention } from './modules/retention/job';
import type { RetentionResult } from './modules/retention/model';
import { VERSION } from './version';

/** Bun closes a connection idle this long; it must outlast the slowest allowed request. */
const MAX_IDLE_TIMEOUT_SECONDS = 255;
/** Headroom over REQUEST_TIMEOUT_MS so the timeout answer is always written before Bun gives up. */
const IDLE_HEADROOM_SECONDS = 5;
/**
 * How long start-up waits for Redis before serving anyway: an instance started during a Redis
 * outage still serves, under RATE_LIMIT_ON_STORE_ERROR, and connects when Redis is back.
 */
const REDIS_STARTUP_WAIT_MS = 2000;

/** Opens the database, migrates when configured, serves, and shuts down cleanly on signals. */
export async function serve(config: Config, logger: Logger): Promise<void> {
  const database = await openMigrated(config, logger, config.MIGRATE_ON_START);
  const { deps, handler } = await buildApplication(config, logger, database);
  if (deps.rateLimitStore && !(await deps.rateLimitStore.ready(REDIS_STARTUP_WAIT_MS))) {
    logger.warn(
      { on_store_error: config.RATE_LIMIT_ON_STORE_ERROR },
      'Redis not reachable at start-up; rate limits follow RATE_LIMIT_ON_STORE_ERROR until it is',
    );
  }
  const server = Bun.serve({
    port: config.PORT,
    hostname: config.HOST,
    // Bun counts a handler that has not written yet as idle (10 s by default).
    idleTimeout: Math.min(
      MAX_IDLE_TIMEOUT_SECONDS,
      Math.ceil(config.REQUEST_TIMEOUT_MS / 1000) + IDLE_HEADROOM_SECONDS,
    ),
    // Our JSON parser answers 413 in the API's error shape; this is only a backstop above it.
    maxRequestBodySize: config.MAX_BODY_BYTES * 2 + 1024 * 1024,
    fetch: (request, srv) => handler(request, srv),
  });
  const stopBackground = startBackgroundWork(deps);
  logger.info(
    { version: VERSION, host: config.HOST, port: server.port, database: database.kind },
    'threadstore listening',
  );
  if (config.adminKeyGenerated) {
    // Printed once, outside the JSON log stream, so a newcomer can call the admin routes.
    process.stderr.write(
      `\nNo ADMIN_API_KEY set: generated one for this run (set it in production):\n  ADMIN_API_KEY=${config.ADMIN_API_KEY}\n\n`,
    );
  }

  let stopping = false;
  /**
   * Graceful shutdown: readiness fails at once, the listener stops taking connections, and
   * background work stops at the same time (the embedding worker abandons its call and gives its
   * batch back); requests in flight finish, all within SHUTDOWN_TIMEOUT_MS; the pool closes, exit 0.
   */
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    deps.lifecycle.shuttingDown = true;
    logger.info({ signal, timeout_ms: config.SHUTDOWN_TIMEOUT_MS }, 'shutting down');
    const deadline = Bun.sleep(config.SHUTDOWN_TIMEOUT_MS).then(() => false);
    let code = 0;
    try {
      // Settles, never rejects, while the drain is awaited: a late rejection would be unhandled.
      const background = stopBackground().then(
        () => true,
        (err: unknown) => {
          logger.error({ err }, 'error stopping background work');
          code = 1;
          return true;
        },
      );
      const drained = await Promise.race([server.stop(false).then(() => true), deadline]);
      if (!drained) {
        logger.warn('requests still running at the shutdown timeout; closing them');
        await server.stop(true);
      }
      if (!(await Promise.race([background, deadline]))) {
        // What is still claimed is taken over by another instance when its lease ends.
        logger.warn('background work still running at the shutdown timeout; leaving it');
      }
      await deps.rateLimitStore?.kill();
      await database.close();
      logger.info('stopped');
    } catch (err) {
      logger.error({ err }, 'error during shutdown');
      code = 1;
    }
    process.exit(code);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/** How often expired idempotency keys are purged. */
const PURGE_INTERVAL_MS = 10 * 60 * 1000;
/** Rows deleted per statement by the purge, so it never holds many locks at once. */
const PURGE_BATCH_SIZE = 1000;

/** Delay of the first scheduled retention run after start-up, so it does not slow the boot. */
const RETENTION_FIRST_RUN_DELAY_MS = 60_000;

/**
 * Periodic housekeeping of the process. The returned function stops it at a safe point:
 * no new run starts, and a run in progress is awaited.
 */
function startBackgroundWork(deps: AppDeps): () => Promise<void> {
  const { db, config, logger, embedder } = deps;
  const worker = embedder ? new EmbeddingWorker(db, embedder, config, logger) : null;
  worker?.start();
  let running: Promise<void> | null = null;
  const purge = () => {
    if (running) return;
    running = purgeExpiredIdempotencyKeys(db, config.IDEMPOTENCY_TTL_SECONDS, PURGE_BATCH_SIZE)
      .then((purged) => {
        if (purged > 0) logger.info({ purged }, 'expired idempotency keys purged');
      })
      // Instances purge concurrently without harm (SKIP LOCKED); a failure waits for next time.
      .catch((err: unknown) => logger.warn({ err }, 'idempotency key purge failed'))
      .finally(() => {
        running = null;
      });
  };
  const timer = setInterval(purge, PURGE_INTERVAL_MS);
  // Retention: the abort stops a run between batches; what it did is committed, the next resumes.
  const retentionStop = new AbortController();
  let retention: Promise<unknown> | null = null;
  const retain = () => {
    retention ??= runRetention(deps, { signal: retentionStop.signal }).finally(() => {
      retention = null;
    });
  };
  const retentionTimers =
    config.RETENTION_INTERVAL_MS > 0
      ? [
          // A first run soon after start-up: deploys more frequent than the interval would
          // otherwise postpone retention forever. Other instances starting too are skipped.
          setTimeout(retain, Math.min(RETENTION_FIRST_RUN_DELAY_MS, config.RETENTION_INTERVAL_MS)),
          setInterval(retain, config.RETENTION_INTERVAL_MS),
        ]
      : [];
  return async () => {
    clearInterval(timer);
    for (const t of retentionTimers) clearTimeout(t);
    retentionStop.abort();
    await Promise.all([running, retention, worker?.stop()]);
  };
}

/** `threadstore migrate`: applies pending migrations and closes the database. */
export async function migrateOnly(config: Config, logger: Logger): Promise<void> {
  await withMigratedDatabase(config, logger, async () => {});
}

/**
 * `threadstore retention run`: one run, its result as JSON on stdout. Returns the exit code: 0
 * when the run completed or was skipped because another instance holds the lock, 1 when it
 * failed or stopped before the end, so a timer or cron job notices. One line on stderr says
 * which.
 */
export async function retentionOnly(config: Config): Promise<number> {
  // Logs go to stderr here: stdout carries the result, for scripts to parse.
  const logger = createLogger(config.LOG_LEVEL, pino.destination(2));
  return withMigratedDatabase(config, logger, async (database) => {
    const result = await runRetention({ database, config, logger });
    process.stdout.write(`${JSON.stringify(result)}\n`);
    const outcome = retentionOutcome(result);
    process.stderr.write(`threadstore: retention run ${outcome.summary}\n`);
    return outcome.code;
  });
}

/** The exit code and one-line summary of a retention run, for the CLI. */
export function retentionOutcome(result: RetentionResult): { code: 0 | 1; summary: string } {
  if (result.skipped) {
    return { code: 0, summary: `skipped: ${result.reason ?? 'another run holds the lock'}` };
  }
  if (result.error) return { code: 1, summary: 'failed; see the logs above' };
  if (!result.complete) {
    return { code: 1, summary: 'stopped before the end (time limit); run it again to resume' };
  }
  return {
    code: 0,
    summary: `completed: ${result.archived} archived, ${result.purged} purged`,
  };
}

/** `threadstore embeddings reindex`: rebuilds the vectors for the configured model. */
export async function reindexOnly(config: Config, logger: Logger): Promise<void> {
  if (!config.EMBEDDING_URL)
    throw new Error('EMBEDDING_URL is not set: there is nothing to re-embed with');
  await withMigratedDatabase(config, logger, async (database) => {
    const queued = await reindexEmbeddings(database, config);
    logger.info(
      { queued, model: config.EMBEDDING_MODEL, dimensions: config.EMBEDDING_DIMENSIONS },
      'embeddings reset; the server embeds the queue',
    );
  });
}
