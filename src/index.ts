import { USAGE, UsageError, healthcheck, parseArgs } from './cli';
import { ConfigError, configWarnings, loadConfig, withoutSecrets } from './config';
import { createLogger } from './logger';
import { VERSION } from './version';

/** Exit code for command-line misuse, as in BSD sysexits' convention used by most CLIs. */
const EXIT_USAGE = 2;

async function main(): Promise<void> {
  let command: ReturnType<typeof parseArgs>;
  try {
    command = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`threadstore: ${err.message}\n\n${USAGE}\n`);
    process.exit(EXIT_USAGE);
  }
  if (command.kind === 'version') {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  if (command.kind === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`threadstore: ${withoutSecrets(err.message)}\n`);
    process.exit(1);
  }
  if (command.kind === 'healthcheck') {
    const healthy = await healthcheck(config.PORT, config.HOST, command.probe);
    if (!healthy) {
      const state = command.probe === 'readyz' ? 'ready' : 'healthy';
      process.stderr.write(`threadstore: no ${state} server on port ${config.PORT}\n`);
    }
    process.exit(healthy ? 0 : 1);
  }
  if (command.kind === 'export') {
    // Before the logger below: that one writes to stdout, which here carries the export.
    const { exportCommand } = await import('./modules/ownership/cli');
    process.exit(await exportCommand(config, command.tenantId));
  }
  const warnings = configWarnings(process.env, config);
  if (command.kind === 'retention-run') {
    // stdout carries the run's JSON result; warnings go with the run's logs, to stderr.
    for (const w of warnings) process.stderr.write(`threadstore: warning: ${w.message}\n`);
    const { retentionOnly } = await import('./server');
    process.exit(await retentionOnly(config));
  }
  const logger = createLogger(config.LOG_LEVEL);
  for (const { message, ...fields } of warnings) logger.warn(fields, message);
  // Loaded only here so --version, --help and the frequent container health probe skip
  // evaluating the whole application.
  const { migrateOnly, reindexOnly, serve } = await import('./server');
  if (command.kind === 'reindex-embeddings') {
    await reindexOnly(config, logger);
    process.exit(0);
  }
  if (command.kind === 'migrate') {
    await migrateOnly(config, logger);
    process.exit(0);
  }
  await serve(config, logger);
}

main().catch((err) => {
  process.stderr.write(
    // A start-up failure (the database unreachable, a migration refused): its message helps the
    // operator, and may quote a URL with its password, so the environment's secrets are cut out.
    `threadstore: fatal: ${withoutSecrets(err instanceof Error ? (err.stack ?? err.message) : String(err))}\n`,
  );
  process.exit(1);
});
