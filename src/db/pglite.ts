import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { drizzle } from 'drizzle-orm/pglite';
// Embedded as files so PGlite works inside the compiled binary, which has no node_modules.
import initdbWasmPath from '@electric-sql/pglite/initdb.wasm' with { type: 'file' };
import fsBundlePath from '@electric-sql/pglite/pglite.data' with { type: 'file' };
import pgliteWasmPath from '@electric-sql/pglite/pglite.wasm' with { type: 'file' };
import type { Logger } from '../logger';
import * as schema from './schema';
import type { Database, DatabaseHandle } from './types';

/** Opens (creating when absent) the embedded PostgreSQL in `dataDir`. */
export async function openPglite(dataDir: string, logger: Logger): Promise<DatabaseHandle> {
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  const started = performance.now();
  const [pgliteWasmModule, initdbWasmModule] = await Promise.all([
    WebAssembly.compile(await Bun.file(pgliteWasmPath).arrayBuffer()),
    WebAssembly.compile(await Bun.file(initdbWasmPath).arrayBuffer()),
  ]);
  const client = await PGlite.create({
    dataDir: dir,
    pgliteWasmModule,
    initdbWasmModule,
    fsBundle: Bun.file(fsBundlePath),
  });
  logger.info(
    { data_dir: dir, duration_ms: Math.round(performance.now() - started) },
    'embedded database opened',
  );
  const db = drizzle(client, { schema }) as unknown as Database;
  return {
    kind: 'pglite',
    db,
    async ping() {
      await client.query('select 1');
    },
    // PGlite is one connection owned by this process; nothing else can run concurrently.
    withAdvisoryLock: (_key, fn) => fn(),
    async close() {
      await client.close();
    },
  };
}
