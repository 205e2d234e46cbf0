import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { drizzle } from 'drizzle-orm/pglite';
import type { Logger } from '../logger';
import { PgliteWorkerClient } from './pglite-client';
import * as schema from './schema';
import type { Database, DatabaseHandle } from './types';

/** Written into the data directory while a process has it open; holds that process's pid. */
const LOCK_FILE = 'threadstore.pid';
/** Attempts at replacing a stale lock file before giving up (another process keeps winning). */
const LOCK_ATTEMPTS = 3;

/** Directories this process has open, since a pid check cannot tell "me again" from "me". */
const openDirs = new Set<string>();

/**
 * Opens (creating when absent) the embedded PostgreSQL in `dataDir`, in a worker thread of its
 * own (pglite-worker.ts): PGlite runs queries in WebAssembly on the thread that calls it, and on
 * the main thread a long query stalled every request, probes and request timeouts included.
 */
export async function openPglite(dataDir: string, logger: Logger): Promise<DatabaseHandle> {
  const dir = resolve(dataDir);
  mkdirSync(dir, { recursive: true });
  const unlock = lockDataDir(dir);
  const started = performance.now();
  let opened: Awaited<ReturnType<typeof PgliteWorkerClient.open>>;
  try {
    opened = await PgliteWorkerClient.open(dir, (err) => {
      // Every query from now on fails 503; the readiness probe fails with them.
      logger.error({ err, data_dir: dir }, 'embedded database stopped');
    });
  } catch (err) {
    unlock();
    throw err;
  }
  const { client, vector } = opened;
  logger.info(
    { data_dir: dir, duration_ms: Math.round(performance.now() - started), vector },
    'embedded database opened',
  );
  const db = drizzle(client.asPglite(), { schema }) as unknown as Database;
  return {
    kind: 'pglite',
    db,
    async ping() {
      await client.query('select 1');
    },
    // PGlite is one connection owned by this process (the data directory lock sees to that).
    withAdvisoryLock: (_key, fn) => fn(db),
    tryAdvisoryLock: async (_key, _name, fn) => ({ acquired: true, value: await fn(db) }),
    // PGlite serialises queries over its one session: what waits behind the running one shows.
    poolStats: () => client.stats(),
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
