// The compiled binary on the embedded database (no DATABASE_URL) while slow queries run. PGlite
// executes in WebAssembly on the thread that calls it; it runs in a worker thread so that the
// event loop stays free: /livez answers and the request timeout fires while searches are queued.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  BUILD_TIMEOUT_MS,
  buildBinary,
  killAllServers,
  ServerProcess,
  TempDirs,
} from '../../harness/binary';

const ADMIN_KEY = 'e2e-worker-admin-key-0123456789';
/** Messages seeded, each containing SEARCH_WORD: one full-text search ranks all of them. */
const MESSAGES = 40_000;
const BATCH_SIZE = 100;
/** Batches in flight while seeding. */
const SEED_CONCURRENCY = 4;
const SEARCH_WORD = 'apple';
/**
 * Search work queued at once, in total: a blocked event loop would hold a probe about this long.
 * The number of searches is derived from how long one takes here, so a faster or slower machine
 * queues the same amount of work.
 */
const QUEUED_WORK_MS = 2000;
const MIN_SEARCHES = 4;
const MAX_SEARCHES = 40;
/** Generous: /livez does no work, and the main thread has nothing else to do. */
const LIVEZ_BOUND_MS = 300;
/** REQUEST_TIMEOUT_MS of the second server: longer than one search, far shorter than the queue. */
const REQUEST_TIMEOUT_MS = 400;
/** How late a request_timeout answer may be and still count as on time. */
const TIMEOUT_SLACK_MS = 500;
/** Build, a fresh embedded database (4 to 8 s) and seeding (about 5 s) on a small, busy machine. */
const SETUP_TIMEOUT_MS = 150_000;
const TEST_TIMEOUT_MS = 60_000;

let binary = '';
let dataDir = '';
let apiKey = '';
/** Searches sent at once, set by the first test from the time one search takes. */
let searches = 0;
let first: ServerProcess | undefined;

const temp = new TempDirs();
const tempDir = (label: string) => temp.make(label);

function start(vars: Record<string, string> = {}): Promise<ServerProcess> {
  return new ServerProcess(
    binary,
    { DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, RATE_LIMIT_ENABLED: 'false', ...vars },
    tempDir('cwd'),
  ).ready();
}

/** One full-text search for the word every message contains, timed from the client. */
async function search(server: ServerProcess) {
  const started = performance.now();
  const res = await server.call('POST', '/v1/search', apiKey, {
    query: SEARCH_WORD,
    mode: 'fulltext',
  });
  return {
    status: res.status,
    code: res.json.error?.code as string | undefined,
    results: (res.json.results as unknown[] | undefined)?.length ?? 0,
    ms: performance.now() - started,
  };
}

beforeAll(async () => {
  binary = await buildBinary(tempDir('bin'));
  dataDir = join(tempDir('data'), 'db');
  first = await start();
  const tenant = await first.call('POST', '/v1/admin/tenants', ADMIN_KEY, { name: 'slow' });
  expect(tenant.status).toBe(201);
  apiKey = tenant.json.api_key;
  let next = 0;
  const batches = MESSAGES / BATCH_SIZE;
  await Promise.all(
    Array.from({ length: SEED_CONCURRENCY }, async () => {
      for (let batch = next++; batch < batches; batch = next++) {
        const messages = Array.from({ length: BATCH_SIZE }, (_, i) => ({
          conversation_id: `c${batch % 50}`,
          role: 'user',
          content: `message ${batch * BATCH_SIZE + i} mentions an ${SEARCH_WORD} among other words`,
        }));
        const res = await first!.call('POST', '/v1/messages/batch', apiKey, { messages });
        expect(res.status).toBe(201);
      }
    }),
  );
}, SETUP_TIMEOUT_MS);

afterAll(async () => {
  await killAllServers();
  temp.removeAll();
});

describe('the embedded database runs off the request thread', () => {
  test(
    '/livez answers promptly while full-text searches over 40,000 messages are queued',
    async () => {
      const server = first!;
      await search(server); // warm-up: the first search reads the index from disk
      const one = await search(server);
      expect(one).toMatchObject({ status: 200, results: 10 });
      searches = Math.min(MAX_SEARCHES, Math.max(MIN_SEARCHES, Math.ceil(QUEUED_WORK_MS / one.ms)));

      let pending = searches;
      const running = Array.from({ length: searches }, () =>
        search(server).finally(() => pending--),
      );
      const probes: number[] = [];
      await Bun.sleep(20);
      while (pending > 1) {
        const sent = performance.now();
        const res = await fetch(server.url('/livez'));
        probes.push(performance.now() - sent);
        expect(res.status).toBe(200);
        await Bun.sleep(50);
      }
      const results = await Promise.all(running);
      // Stopped before the assertions, so the next test gets the data directory either way.
      expect(await server.stop()).toBe(0);
      expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
      const slowest = Math.max(...results.map((r) => r.ms));
      // The searches queued long enough that a blocked event loop would have held a probe.
      expect(slowest).toBeGreaterThan(LIVEZ_BOUND_MS * 2);
      console.log(
        `${searches} concurrent searches (one alone: ${Math.round(one.ms)} ms), slowest ` +
          `${Math.round(slowest)} ms; ${probes.length} /livez probes, slowest ` +
          `${Math.round(Math.max(...probes))} ms`,
      );
      expect(Math.max(...probes)).toBeLessThan(LIVEZ_BOUND_MS);
    },
    TEST_TIMEOUT_MS,
  );

  test(
    'a search queued behind others answers 503 request_timeout on time, and the data survived the restart',
    async () => {
      if (!searches) throw new Error('needs the calibration of the previous test');
      const server = await start({ REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS) });
      const results = await Promise.all(Array.from({ length: searches }, () => search(server)));
      const timedOut = results.filter((r) => r.status === 503);
      console.log(
        `REQUEST_TIMEOUT_MS=${REQUEST_TIMEOUT_MS}: ${timedOut.length} of ${searches} searches ` +
          `answered 503; every answer within ${Math.round(Math.max(...results.map((r) => r.ms)))} ms`,
      );
      expect(timedOut.length).toBeGreaterThan(0);
      for (const r of results) {
        if (r.status === 200) expect(r.results).toBe(10);
        else expect(r).toMatchObject({ status: 503, code: 'request_timeout' });
        expect(r.ms).toBeLessThan(REQUEST_TIMEOUT_MS + TIMEOUT_SLACK_MS);
      }
      // The abandoned searches still run to their end in the worker (PGlite cannot interrupt a
      // query); once they are done, searches answer again.
      const deadline = Date.now() + TEST_TIMEOUT_MS / 2;
      let after = await search(server);
      while (after.status !== 200 && Date.now() < deadline) after = await search(server);
      expect(after).toMatchObject({ status: 200, results: 10 });
      expect(await server.stop()).toBe(0);
      // Closed cleanly: the worker closed PGlite and the lock was released.
      expect(existsSync(join(dataDir, 'threadstore.pid'))).toBe(false);
    },
    TEST_TIMEOUT_MS,
  );
});
