// Preloaded by bunfig.toml: one real PostgreSQL server for the whole run, migrated once.
// DATABASE_URL wins when set; otherwise a throwaway cluster is started from local binaries.
import { afterAll } from 'bun:test';
import { loadConfig } from '../src/config';
import { openDatabase } from '../src/db/client';
import { migrate } from '../src/db/migrate';
import { createLogger } from '../src/logger';
import { startPostgres } from '../harness/postgres';

const given = process.env.DATABASE_URL;
const cluster = given ? null : await startPostgres();
const url = given ?? cluster!.url;
process.env.TEST_DATABASE_URL = url;

const config = loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent' });
const handle = await openDatabase(config, createLogger('silent'));
await migrate(handle);
await handle.close();

afterAll(async () => {
  await cluster?.stop();
});
