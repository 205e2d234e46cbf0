import { createApp } from './app';
import type { Config } from './config';
import { openDatabase } from './db/client';
import { migrate } from './db/migrate';
import { createDeps } from './deps';
import type { Logger } from './logger';
import { VERSION } from './version';

/** Bun's default idle timeout (10 s) would cut off slow but healthy requests. */
const IDLE_TIMEOUT_SECONDS = 60;
/** How long in-flight requests get to finish after SIGTERM before the process exits anyway. */
const SHUTDOWN_GRACE_MS = 10_000;

/** Opens the database, migrates when configured, serves, and shuts down cleanly on signals. */
export async function serve(config: Config, logger: Logger): Promise<void> {
  const database = await openDatabase(config, logger);
  if (config.MIGRATE_ON_START) {
    const applied = await migrate(database);
    logger.info({ applied }, 'migrations up to date');
  }
  const app = createApp(createDeps(config, logger, database)).listen({
    port: config.PORT,
    hostname: config.HOST,
    idleTimeout: IDLE_TIMEOUT_SECONDS,
    // Our JSON parser answers 413 in the API's error shape; this is only a backstop above it.
    maxRequestBodySize: config.MAX_BODY_BYTES * 2 + 1024 * 1024,
  });
  const port = app.server?.port;
  logger.info(
    { version: VERSION, host: config.HOST, port, database: database.kind },
    'threadstore listening',
  );
  if (config.adminKeyGenerated) {
    // Printed once, outside the JSON log stream, so a newcomer can call the admin routes.
    process.stderr.write(
      `\nNo ADMIN_API_KEY set: generated one for this run (set it in production):\n  ADMIN_API_KEY=${config.ADMIN_API_KEY}\n\n`,
    );
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      logger.error('shutdown timed out; exiting');
      process.exit(1);
    }, SHUTDOWN_GRACE_MS);
    try {
      await app.stop();
      await database.close();
      clearTimeout(force);
      logger.info('stopped');
      process.exit(0);
    } catch (err) {
      logger.error({ err }, 'error during shutdown');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

/** `threadstore migrate`: applies pending migrations and closes the database. */
export async function migrateOnly(config: Config, logger: Logger): Promise<void> {
  const database = await openDatabase(config, logger);
  try {
    const applied = await migrate(database);
    logger.info({ applied }, 'migrations up to date');
  } finally {
    await database.close();
  }
}
