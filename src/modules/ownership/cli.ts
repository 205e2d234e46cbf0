import { once } from 'node:events';
import pino from 'pino';
import type { Config } from '../../config';
import { openDatabase } from '../../db/client';
import { migrate } from '../../db/migrate';
import { AppError } from '../../lib/errors';
import { createLogger } from '../../logger';
import { openExport } from './service';

/**
 * `threadstore export --tenant ID`: the tenant's NDJSON export on stdout, the same lines as
 * GET /v1/admin/tenants/:id/export. Returns the exit code: 0 when the `end` line was written,
 * 1 for an unknown tenant (said on stderr, nothing on stdout).
 */
export async function exportCommand(
  config: Config,
  tenantId: string,
  out: NodeJS.WritableStream = process.stdout,
): Promise<number> {
  // Logs go to stderr: stdout carries the data and must hold nothing else.
  const logger = createLogger(config.LOG_LEVEL, pino.destination({ dest: 2, sync: true }));
  const database = await openDatabase(config, logger);
  try {
    // As the other one-shot commands do, so a fresh embedded database answers "not found".
    await migrate(database);
    let lines: AsyncGenerator<string>;
    try {
      lines = await openExport(database.db, tenantId);
    } catch (err) {
      if (err instanceof AppError && err.status === 404) {
        process.stderr.write(`threadstore: tenant ${tenantId} not found\n`);
        return 1;
      }
      throw err;
    }
    for await (const line of lines) {
      // Waits for a slow reader (a pipe, a network copy) instead of queueing the export.
      if (!out.write(line)) await once(out, 'drain');
    }
    // Everything handed to stdout is flushed before the caller exits the process.
    await new Promise<void>((resolve, reject) =>
      out.write('', (err) => (err ? reject(err) : resolve())),
    );
    return 0;
  } finally {
    await database.close();
  }
}
