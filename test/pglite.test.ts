// The embedded database (no DATABASE_URL) in process: PGlite under a temporary DATA_DIR, migrated
// from scratch, behind the same app as PostgreSQL. One instance for the whole file: creating one
// costs seconds.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createApp } from '../src/app';
import { loadConfig } from '../src/config';
import { openDatabase } from '../src/db/client';
import { errorCodeOf } from '../src/db/errors';
import { migrate } from '../src/db/migrate';
import { rowsOf } from '../src/db/raw';
import type { DatabaseHandle } from '../src/db/types';
import { createDeps } from '../src/deps';
import { createLogger } from '../src/logger';
import { toAppError } from '../src/plugins/errors';
import { withRequestState } from '../src/lib/request-state';

const ADMIN_KEY = 'pglite-admin-key-0123456789';
/** A fresh PGlite takes 4 to 8 s here; leave room for a slower machine. */
const OPEN_TIMEOUT_MS = 60_000;
/** Rows of the deliberately slow query: about a second of PGlite's time here. */
const SLOW_QUERY_ROWS = 1_000_000;
/** Generous: a 10 ms timer on a free event loop. */
const TIMER_BOUND_MS = 150;
const MIGRATION_COUNT = (
  JSON.parse(readFileSync(join(import.meta.dir, '..', 'drizzle', 'meta', '_journal.json'), 'utf8'))
    .entries as unknown[]
).length;

const dataDir = join(mkdtempSync(join(tmpdir(), 'threadstore-pglite-')), 'data');
const config = loadConfig({ DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY, LOG_LEVEL: 'silent' });
const logger = createLogger('silent');
let database: DatabaseHandle;
let app: ReturnType<typeof createApp>;
let firstMigration = -1;

beforeAll(async () => {
  database = await openDatabase(config, logger);
  firstMigration = await migrate(database);
  app = createApp(createDeps(config, logger, database));
}, OPEN_TIMEOUT_MS);

afterAll(async () => {
  await database?.close();
  rmSync(join(dataDir, '..'), { recursive: true, force: true });
});

async function call(method: string, path: string, key: string | null, body?: unknown) {
  const headers: Record<string, string> = {};
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await app.handle(
    new Request(`http://localhost${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    }),
  );
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

async function tenant(): Promise<string> {
  const res = await call('POST', '/v1/admin/tenants', ADMIN_KEY, { name: 'embedded' });
  expect(res.status).toBe(201);
  return res.json.api_key;
}

describe('the embedded database', () => {
  test('is what an unset DATABASE_URL opens, migrated from scratch and then up to date', async () => {
    expect(config.DATABASE_URL).toBeUndefined();
    expect(database.kind).toBe('pglite');
    expect(firstMigration).toBe(MIGRATION_COUNT);
    expect(await migrate(database)).toBe(0);
    expect(existsSync(join(dataDir, 'PG_VERSION'))).toBe(true);
  });

  test('answers the readiness probe', async () => {
    const res = await call('GET', '/readyz', null);
    expect(res).toEqual({ status: 200, json: { status: 'ready' } });
  });

  test('stores, lists and summarises messages like PostgreSQL', async () => {
    const key = await tenant();
    const created: { id: string }[] = [];
    for (const [conversation_id, content] of [
      ['alpha', 'first'],
      ['alpha', 'second'],
      ['beta', 'third'],
    ]) {
      const res = await call('POST', '/v1/messages', key, {
        conversation_id,
        role: 'user',
        content,
      });
      expect(res.status).toBe(201);
      created.push(res.json);
    }
    const got = await call('GET', `/v1/messages/${created[0]!.id}`, key);
    expect(got).toEqual({ status: 200, json: created[0] });

    const list = await call('GET', '/v1/messages?conversation_id=alpha', key);
    expect(list.status).toBe(200);
    expect(list.json.messages.map((m: { content: string }) => m.content)).toEqual([
      'first',
      'second',
    ]);

    const conversations = await call('GET', '/v1/conversations', key);
    expect(conversations.status).toBe(200);
    expect(
      conversations.json.conversations.map((c: { id: string; message_count: number }) => [
        c.id,
        c.message_count,
      ]),
    ).toEqual([
      ['alpha', 2],
      ['beta', 1],
    ]);
  });

  test('keeps tenants apart', async () => {
    const [a, b] = [await tenant(), await tenant()];
    const created = await call('POST', '/v1/messages', a, {
      conversation_id: 'private',
      role: 'user',
      content: 'only for a',
    });
    expect((await call('GET', `/v1/messages/${created.json.id}`, b)).status).toBe(404);
    const list = await call('GET', '/v1/messages?conversation_id=private', b);
    expect(list.json.messages).toEqual([]);
  });

  test('has pgvector, created at start-up, with HNSW and cosine ordering', async () => {
    const run = async <T>(query: ReturnType<typeof sql>) =>
      rowsOf<T>(await database.db.execute(query));
    const [ext] = await run<{ extversion: string }>(
      sql`select extversion from pg_extension where extname = 'vector'`,
    );
    expect(ext?.extversion).toMatch(/^\d+\.\d+\.\d+$/);
    // Idempotent, as every start-up runs it.
    await run(sql`create extension if not exists vector`);

    await run(sql`create table pgvector_check (id int primary key, embedding vector(3) not null)`);
    await run(
      sql`create index pgvector_check_hnsw on pgvector_check using hnsw (embedding vector_cosine_ops)`,
    );
    await run(
      sql`insert into pgvector_check values (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0.9,0.1,0]')`,
    );
    const nearest = await run<{ id: number }>(
      sql`select id from pgvector_check order by embedding <=> '[1,0,0]' limit 2`,
    );
    expect(nearest.map((row) => row.id)).toEqual([1, 3]);
    await run(sql`drop table pgvector_check`);
    // The bundle copy made for PGlite does not outlive start-up.
    expect(existsSync(join(dataDir, '.pgvector.tar.gz'))).toBe(false);
  });

  test('runs queries off the main thread: timers fire while a slow query runs', async () => {
    const started = performance.now();
    // `then` sends it now: a drizzle query runs only once awaited.
    const slow = database.db
      .execute(
        sql`select count(distinct md5(g::text)) from generate_series(1, ${SLOW_QUERY_ROWS}::int) g`,
      )
      .then(() => performance.now() - started);
    const timerFiredAfter = await new Promise<number>((resolve) =>
      setTimeout(() => resolve(performance.now() - started), 10),
    );
    const queryMs = await slow;
    // Slow enough that a blocked event loop would show; on the main thread the timer waited
    // for the whole query.
    expect(queryMs).toBeGreaterThan(TIMER_BOUND_MS * 2);
    expect(timerFiredAfter).toBeLessThan(TIMER_BOUND_MS);
  });

  test('keeps a transaction on its session: outside queries wait for it, failures roll back', async () => {
    const count = async () =>
      rowsOf<{ n: number }>(
        await database.db.execute(sql`select count(*)::int as n from worker_tx_check`),
      )[0]!.n;
    await database.db.execute(sql`create table worker_tx_check (n int primary key)`);
    try {
      let outside: Promise<number> | undefined;
      let outsideDone = false;
      await database.db.transaction(async (tx) => {
        await tx.execute(sql`insert into worker_tx_check values (1)`);
        outside = count().finally(() => (outsideDone = true));
        await Bun.sleep(50);
        expect(outsideDone).toBe(false);
        // The session as a pool of one: the transaction holds it, the outside query waits.
        expect(database.poolStats()).toMatchObject({ max: 1, inUse: 1, waiting: 1 });
        expect(
          rowsOf<{ n: number }>(
            await tx.execute(sql`select count(*)::int as n from worker_tx_check`),
          )[0]!.n,
        ).toBe(1);
      });
      expect(await outside!).toBe(1);
      expect(database.poolStats()).toEqual({ max: 1, inUse: 0, waiting: 0, inFlight: 0 });

      const failed = database.db.transaction(async (tx) => {
        await tx.execute(sql`insert into worker_tx_check values (2)`);
        throw new Error('changed my mind');
      });
      // Not `expect(failed).rejects`: Bun waits for that promise without delivering the worker's
      // messages, so it never settles.
      expect(await failed.catch((err: Error) => err.message)).toBe('changed my mind');
      expect(await count()).toBe(1);

      // A nested transaction is a savepoint of the same session.
      await database.db.transaction(async (tx) => {
        await tx.execute(sql`insert into worker_tx_check values (3)`);
        await tx
          .transaction(async (inner) => {
            await inner.execute(sql`insert into worker_tx_check values (4)`);
            throw new Error('inner only');
          })
          .catch(() => {});
      });
      const rows = rowsOf<{ n: number }>(
        await database.db.execute(sql`select n from worker_tx_check order by n`),
      );
      expect(rows.map((r) => r.n)).toEqual([1, 3]);

      // PostgreSQL's error fields cross the thread: the error mapping reads the SQLSTATE.
      const duplicate = await database.db
        .execute(sql`insert into worker_tx_check values (1)`)
        .catch((err: unknown) => err);
      expect(errorCodeOf(duplicate)).toBe('23505');
    } finally {
      await database.db.execute(sql`drop table worker_tx_check`);
    }
  });

  test('cannot be opened twice at once: two writers would corrupt it', async () => {
    await expect(openDatabase(config, logger)).rejects.toThrow(/already open/);
  });

  test('refuses the statements of a request that has timed out, in a transaction too, which rolls back', async () => {
    const deadline = new AbortController();
    const state = { id: 'pglite-deadline', startedAt: performance.now(), signal: deadline.signal };
    const key = `deadline-${crypto.randomUUID()}`;
    const failed = await withRequestState(state, () =>
      database.db.transaction(async (tx) => {
        await tx.execute(sql`insert into app_settings (key, value) values (${key}, '1')`);
        deadline.abort();
        await tx.execute(sql`insert into app_settings (key, value) values (${`${key}-2`}, '2')`);
      }),
    ).catch((err: unknown) => err);
    expect(toAppError(undefined, failed)?.code).toBe('request_timeout');
    // Awaited inside: a drizzle query is sent when awaited, in the context of whoever awaits it.
    const refused = await withRequestState(state, async () => {
      await database.db.execute(sql`select 1`);
    }).catch((err: unknown) => err);
    expect(toAppError(undefined, refused)?.code).toBe('request_timeout');
    // Outside the request all is as before, and the transaction left nothing.
    const rows = rowsOf<{ n: number }>(
      await database.db.execute(
        sql`select count(*)::int as n from app_settings where key like ${`${key}%`}`,
      ),
    );
    expect(rows[0]!.n).toBe(0);
  });
});
