import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { gatedClient, PoolGate } from '../src/db/pool-gate';
import { toAppError } from '../src/plugins/errors';
import { DELETE_BATCH } from '../src/modules/conversations/service';
import { buildTestApp } from './support/app';

// Slowness and observation from the database itself: statement-level triggers on messages
// sleep for the tenants listed in deadline_watch and log how many of their rows each
// statement changed. No test-only path in the service.
const admin = postgres(process.env.TEST_DATABASE_URL!, { max: 2, onnotice: () => {} });

beforeAll(async () => {
  await admin.unsafe(`
    create table if not exists deadline_watch (tenant_id uuid primary key, sleep_ms int not null);
    create table if not exists deadline_log (tenant_id uuid, op text, n int, at timestamptz default clock_timestamp());
    create or replace function deadline_watch_update() returns trigger language plpgsql as $$
    declare d int;
    begin
      select max(w.sleep_ms) into d from deadline_watch w
        where w.tenant_id in (select distinct tenant_id from new_rows);
      if d is not null then
        insert into deadline_log (tenant_id, op, n)
          select tenant_id, 'update', count(*) from new_rows group by tenant_id;
        perform pg_sleep(d / 1000.0);
      end if;
      return null;
    end $$;
    create or replace function deadline_watch_delete() returns trigger language plpgsql as $$
    declare d int;
    begin
      select max(w.sleep_ms) into d from deadline_watch w
        where w.tenant_id in (select distinct tenant_id from old_rows);
      if d is not null then
        insert into deadline_log (tenant_id, op, n)
          select tenant_id, 'delete', count(*) from old_rows group by tenant_id;
        perform pg_sleep(d / 1000.0);
      end if;
      return null;
    end $$;
    drop trigger if exists trg_deadline_update on messages;
    create trigger trg_deadline_update after update on messages
      referencing new table as new_rows for each statement execute function deadline_watch_update();
    drop trigger if exists trg_deadline_delete on messages;
    create trigger trg_deadline_delete after delete on messages
      referencing old table as old_rows for each statement execute function deadline_watch_delete();
  `);
});

afterAll(async () => {
  await admin.unsafe(`
    drop trigger if exists trg_deadline_update on messages;
    drop trigger if exists trg_deadline_delete on messages;
    drop function if exists deadline_watch_update();
    drop function if exists deadline_watch_delete();
    drop table if exists deadline_watch;
    drop table if exists deadline_log;
  `);
  await admin.end();
});

/** `count` messages in one conversation of `tenantId`, written straight to the database. */
async function seedConversation(tenantId: string, conversation: string, count: number) {
  await admin`insert into conversations (tenant_id, id) values (${tenantId}, ${conversation})`;
  await admin`
    insert into messages (id, tenant_id, conversation_id, role, content, created_at)
    select gen_random_uuid(), ${tenantId}, ${conversation}, 'user', 'message ' || n,
      now() - make_interval(secs => ${count} - n)
    from generate_series(1, ${count}) n`;
}

const watch = (tenantId: string, sleepMs: number) =>
  admin`insert into deadline_watch (tenant_id, sleep_ms) values (${tenantId}, ${sleepMs})`;
const unwatch = (tenantId: string) =>
  admin`delete from deadline_watch where tenant_id = ${tenantId}`;
const count = async (query: postgres.PendingQuery<{ n: number }[]>) => (await query)[0]!.n;
/** Statements of the app still running on the server. */
const activeStatements = () =>
  count(admin`select count(*)::int as n from pg_stat_activity
    where application_name = 'threadstore' and state = 'active' and query ilike '%messages%'`);

describe('a request answered 503 request_timeout stops its work', () => {
  test('archiving a long conversation stops between two batches, and nothing runs after the 503', async () => {
    // Each archive batch (5,000 rows) sleeps 500 ms: the first ends before the 800 ms timeout,
    // the second is running when it strikes, the third would come after.
    const t = await buildTestApp({ REQUEST_TIMEOUT_MS: '800' });
    try {
      const { id, api_key } = await t.tenant();
      await seedConversation(id, 'long', 11_000);
      await watch(id, 500);
      const archived = () =>
        count(admin`select count(*)::int as n from messages
          where tenant_id = ${id} and archived`);
      const res = await t.call('POST', '/v1/conversations/long/archive', { key: api_key });
      expect(res.status).toBe(503);
      expect(res.json.error.code).toBe('request_timeout');
      expect(res.headers.get('retry-after')).toBe('1');
      // The batch running at the timeout was cancelled, not left to finish.
      await Bun.sleep(100);
      expect(await activeStatements()).toBe(0);
      const atAnswer = await archived();
      // Long enough for the two remaining batches to have run had the loop gone on.
      await Bun.sleep(1500);
      expect(await archived()).toBe(atAnswer);
      expect(atAnswer % 5000).toBe(0);
      expect(atAnswer).toBeLessThan(11_000);
      const statements = await admin<{ n: number }[]>`
        select n from deadline_log where tenant_id = ${id} and op = 'update'`;
      expect(statements.length).toBe(atAnswer / 5000);
      // A repeat, with time enough, archives the rest.
      await unwatch(id);
      const again = await t.call('POST', '/v1/conversations/long/archive', { key: api_key });
      expect(again.status).toBe(200);
      expect(again.json.archived).toBe(11_000 - atAnswer);
      // No warning for the refused statements: the timeout is logged once, by the transport.
      const warnings = t.logs.lines.filter((l) => l.level === 'warn');
      expect(warnings.map((l) => l.msg)).toEqual(['request timed out']);
    } finally {
      await t.close();
    }
  });

  test('deleting a long conversation goes in bounded batches; interrupted, a repeat finishes it', async () => {
    const t = await buildTestApp({ REQUEST_TIMEOUT_MS: '800' });
    try {
      const { id, api_key } = await t.tenant();
      const total = DELETE_BATCH * 3;
      await seedConversation(id, 'long', total);
      await watch(id, 500);
      const left = () =>
        count(admin`select count(*)::int as n from messages where tenant_id = ${id}`);
      const res = await t.call('DELETE', '/v1/conversations/long', { key: api_key });
      expect(res.status).toBe(503);
      expect(res.json.error.code).toBe('request_timeout');
      await Bun.sleep(100);
      expect(await activeStatements()).toBe(0);
      const atAnswer = await left();
      await Bun.sleep(1500);
      expect(await left()).toBe(atAnswer);
      expect(atAnswer).toBeGreaterThan(0);
      // Still there, with what was not deleted yet.
      const still = await t.call('GET', '/v1/conversations/long', { key: api_key });
      expect(still.status).toBe(200);
      expect(still.json.message_count).toBe(atAnswer);

      // Fast enough now: the repeat finishes, in batches of at most DELETE_BATCH.
      await admin`update deadline_watch set sleep_ms = 0 where tenant_id = ${id}`;
      const again = await t.call('DELETE', '/v1/conversations/long', { key: api_key });
      expect(again.status).toBe(204);
      const statements = await admin<{ n: number }[]>`
        select n from deadline_log where tenant_id = ${id} and op = 'delete' and n > 0 order by at`;
      expect(statements.length).toBeGreaterThanOrEqual(3);
      for (const { n } of statements) expect(n).toBeLessThanOrEqual(DELETE_BATCH);
      expect(statements.reduce((sum, { n }) => sum + n, 0)).toBe(total);
      // 204: nothing of it is left, anywhere.
      expect(await left()).toBe(0);
      expect(
        await count(admin`select count(*)::int as n from message_search where tenant_id = ${id}`),
      ).toBe(0);
      expect((await t.call('GET', '/v1/conversations/long', { key: api_key })).status).toBe(404);
      const listed = await t.call('GET', '/v1/messages?conversation_id=long', { key: api_key });
      expect(listed.json.messages).toEqual([]);
    } finally {
      await t.close();
    }
  });
});

describe('the pool gate and the request deadline', () => {
  const client = postgres(process.env.TEST_DATABASE_URL!, {
    max: 2,
    onnotice: () => {},
    connection: { application_name: 'threadstore-deadline-test' },
  });
  afterAll(() => client.end());

  /** A drizzle database whose statements all belong to a request with `signal`. */
  function requestDatabase(signal: AbortSignal) {
    const gate = new PoolGate(2, 1000, 1, { scope: () => ({ tenantId: 't', signal }) });
    return drizzle(gatedClient(client, gate));
  }

  test('a transaction refuses its next statement once the deadline has passed, and rolls back', async () => {
    const deadline = new AbortController();
    const db = requestDatabase(deadline.signal);
    const key = `deadline-${crypto.randomUUID()}`;
    const failed = await db
      .transaction(async (tx) => {
        await tx.execute(sql`insert into app_settings (key, value) values (${key}, '1')`);
        deadline.abort();
        await tx.execute(sql`insert into app_settings (key, value) values (${`${key}-2`}, '2')`);
      })
      .catch((err: unknown) => err);
    expect(toAppError(undefined, failed)?.code).toBe('request_timeout');
    expect(
      await count(admin`select count(*)::int as n from app_settings where key like ${`${key}%`}`),
    ).toBe(0);
    // And no new transaction begins.
    const refused = await db.transaction(async () => {}).catch((err: unknown) => err);
    expect(toAppError(undefined, refused)?.code).toBe('request_timeout');
  });

  test('a statement running at the deadline is cancelled on the server', async () => {
    const deadline = new AbortController();
    const db = requestDatabase(deadline.signal);
    const started = performance.now();
    const running = db.execute(sql`select pg_sleep(10)`).catch((err: unknown) => err);
    await Bun.sleep(200);
    deadline.abort();
    const failed = await running;
    expect(toAppError(undefined, failed)?.code).toBe('request_timeout');
    expect(performance.now() - started).toBeLessThan(2000);
    await Bun.sleep(100);
    expect(
      await count(admin`select count(*)::int as n from pg_stat_activity
        where application_name = 'threadstore-deadline-test' and query ilike '%pg_sleep%'
          and state = 'active'`),
    ).toBe(0);
  });
});
