import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Extension, PGlite, type Transaction } from '@electric-sql/pglite';
import { vector } from '@electric-sql/pglite-pgvector';
import { drizzle } from 'drizzle-orm/pglite';
// Embedded as files so PGlite works inside the compiled binary, which has no node_modules.
import initdbWasmPath from '@electric-sql/pglite/initdb.wasm' with { type: 'file' };
import fsBundlePath from '@electric-sql/pglite/pglite.data' with { type: 'file' };
import pgliteWasmPath from '@electric-sql/pglite/pglite.wasm' with { type: 'file' };
// By path: the package's exports map lists only its JavaScript, which finds the bundle through
// import.meta.url, a path inside the binary that PGlite cannot read (see vectorExtension).
import vectorBundlePath from '../../node_modules/@electric-sql/pglite-pgvector/dist/vector.tar.gz' with { type: 'file' };
import { requestTimedOut } from '../lib/errors';
import type { Logger } from '../logger';
import { currentRequestState } from '../plugins/request-id';
import * as schema from './schema';
import type { Database, DatabaseHandle } from './types';

/** Written into the data directory while a process has it open; holds that process's pid. */
const LOCK_FILE = 'threadstore.pid';
/** Attempts at replacing a stale lock file before giving up (another process keeps winning). */
const LOCK_ATTEMPTS = 3;

/**
 * pgvector's bundle, copied into the data directory while PGlite starts. The data directory
 * rather than a temporary one: it is the one place certain to be writable (a container may
 * well run with a read-only root filesystem).
 */
const VECTOR_BUNDLE_COPY = '.pgvector.tar.gz';

/**
 * The client with every statement (in a transaction too) refused once the current request has
 * timed out, as the pool gate does for PostgreSQL: a loop of statements stops between two, and
 * a transaction rolls back. A statement already running cannot be cancelled here (PGlite runs
 * it on this thread); the next one is never sent.
 */
function withinDeadline(client: PGlite): PGlite {
  return new Proxy(client, {
    get(target, prop, receiver) {
      if (prop === 'query') return checkedQuery(target);
      if (prop === 'transaction') {
        return <T>(fn: (tx: Transaction) => Promise<T>) =>
          target.transaction((tx) =>
            fn(
              new Proxy(tx, {
                get: (t, p, r) => (p === 'query' ? checkedQuery(t) : Reflect.get(t, p, r)),
              }),
            ),
          );
      }
      return Reflect.get(target, prop, receiver);
    },
  });
}

function checkedQuery(target: Pick<PGlite, 'query'>): PGlite['query'] {
  return ((...args: Parameters<PGlite['query']>) => {
    if (currentRequestState()?.signal?.aborted) return Promise.reject(requestTimedOut());
    return target.query(...args);
  }) as PGlite['query'];
}

/** Directories this process has open, since a pid check cannot tell "me again" from "me". */
const openDirs = new Set<string>();

/** Opens (creating when absent) the embedded PostgreSQL in `dataDir`. */
export async function openPglite(dataDir: string, logger: Logger): Promise<DatabaseHandle> {
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  const unlock = lockDataDir(dir);
  const started = performance.now();
  let client: PGlite | undefined;
  let vectorVersion: string;
  const bundleCopy = join(dir, VECTOR_BUNDLE_COPY);
  try {
    const [pgliteWasmModule, initdbWasmModule] = await Promise.all([
      WebAssembly.compile(await Bun.file(pgliteWasmPath).arrayBuffer()),
      WebAssembly.compile(await Bun.file(initdbWasmPath).arrayBuffer()),
      Bun.write(bundleCopy, Bun.file(vectorBundlePath)),
    ]);
    client = await PGlite.create({
      dataDir: dir,
      pgliteWasmModule,
      initdbWasmModule,
      fsBundle: Bun.file(fsBundlePath),
      extensions: { vector: vectorExtension(pathToFileURL(bundleCopy)) },
    });
    vectorVersion = await createVectorExtension(client);
  } catch (err) {
    await client?.close().catch(() => {});
    unlock();
    throw err;
  } finally {
    // PGlite has read the bundle by the time create() settles.
    rmSync(bundleCopy, { force: true });
  }
  logger.info(
    { data_dir: dir, duration_ms: Math.round(performance.now() - started), vector: vectorVersion },
    'embedded database opened',
  );
  const db = drizzle(withinDeadline(client), { schema }) as unknown as Database;
  return {
    kind: 'pglite',
    db,
    async ping() {
      await client.query('select 1');
    },
    // PGlite is one connection owned by this process (the data directory lock sees to that).
    withAdvisoryLock: (_key, fn) => fn(db),
    // PGlite serialises queries itself over its one connection.
    poolStats: () => ({ max: 1, inUse: 0, waiting: 0, inFlight: 0 }),
    // Every change to the data comes from this process (the lock above), which drops what it
    // cached itself: there is nobody else to hear from, so everything is heard, for good.
    listen(_channel, handlers) {
      handlers.onState(true);
      handlers.onHeard(Number.POSITIVE_INFINITY);
      return { close: async () => {} };
    },
    async close() {
      try {
        await client.close();
      } finally {
        unlock();
      }
    },
  };
}

/**
 * pgvector as the package defines it, but loaded from `bundle`. Inside the compiled binary the
 * package's own bundle path is under /$bunfs, which PGlite's fs.createReadStream cannot open.
 */
function vectorExtension(bundle: URL): Extension {
  return {
    name: vector.name,
    setup: async (pg, emscriptenOpts) => ({
      ...(await vector.setup(pg, emscriptenOpts)),
      bundlePath: bundle,
    }),
  };
}

/**
 * Creates pgvector in the database, or brings it up to the version of the library just loaded
 * (a newer binary may carry a newer pgvector than the one that created the data directory), and
 * returns its version. Failing here fails start-up: the extension ships inside this program, so
 * a failure is a packaging bug, not a missing server feature to degrade around.
 */
async function createVectorExtension(client: PGlite): Promise<string> {
  await client.exec('create extension if not exists vector; alter extension vector update');
  const { rows } = await client.query<{ extversion: string }>(
    `select extversion from pg_extension where extname = 'vector'`,
  );
  return rows[0]!.extversion;
}

/**
 * Claims `dir` for this process and returns the release function. PGlite has no locking of its
 * own: a second process (a `threadstore migrate` next to a running server, two replicas on one
 * volume) would open the same files and corrupt them. Like postmaster.pid, a lock whose process
 * is gone (killed, or the previous run of a container, which had this very pid) is taken over.
 */
function lockDataDir(dir: string): () => void {
  if (openDirs.has(dir)) throw new Error(`DATA_DIR ${dir} is already open in this process`);
  const file = join(dir, LOCK_FILE);
  for (let attempt = 0; attempt < LOCK_ATTEMPTS; attempt++) {
    try {
      writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
      openDirs.add(dir);
      return () => {
        openDirs.delete(dir);
        rmSync(file, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = readPid(file);
    if (owner !== null && owner !== process.pid && isRunning(owner)) {
      throw new Error(
        `DATA_DIR ${dir} is in use by process ${owner}; the embedded database allows one process ` +
          `at a time (delete ${file} if that process is not threadstore)`,
      );
    }
    rmSync(file, { force: true });
  }
  throw new Error(`could not lock DATA_DIR ${dir}: ${file} keeps reappearing`);
}

function readPid(file: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8'), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    // Removed between our attempt and this read: the next attempt will tell.
    return null;
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it exists but belongs to another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  // A killed process that nobody reaped (PID 1 in many containers never does) still answers
  // kill(pid, 0) as a zombie; Linux shows its state in /proc. Elsewhere, trust kill().
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true;
  }
}
