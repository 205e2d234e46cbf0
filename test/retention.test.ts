import { afterAll, describe, expect, test } from 'bun:test';
import { type SQL, sql } from 'drizzle-orm';
import postgres from 'postgres';
import { rowsOf } from '../src/db/raw';
import { LAST_RUN_SETTING, runRetention } from '../src/modules/retention/job';
import type { RetentionResult } from '../src/modules/retention/model';
import {
  archiveBatch,
  deleteEmptyConversations,
  lockConversations,
  policiesQuery,
  purgeBatch,
} from '../src/modules/retention/queries';
import { ADMIN_KEY, buildTestApp, sharedApp } from './support/app';

const t = await sharedApp();
const DAY_MS = 86_400_000;

async function rows<T>(query: SQL): Promise<T[]> {
  return rowsOf<T>(await t.db.execute(query));
}

/** A fresh tenant with a policy set directly in its settings (as the admin API stores it). */
async function tenantWithPolicy(policy: {
  archive_after_days?: number;
  purge_after_days?: number;
}) {
  const tenant = await t.tenant('retention');
  await t.db.execute(
    sql`update tenants set settings = settings || ${JSON.stringify(policy)}::jsonb where id = ${tenant.id}`,
  );
  return tenant;
}

/** `count` messages in a conversation, created about `daysAgo` days ago (a second apart). */
async function seed(tenantId: string, conversation: string, daysAgo: number, count: number) {
  await t.db.execute(
    sql`insert into conversations (tenant_id, id) values (${tenantId}, ${conversation}) on conflict do nothing`,
  );
  await t.db.execute(sql`
    insert into messages (id, tenant_id, conversation_id, role, content, created_at)
    select gen_random_uuid(), ${tenantId}, ${conversation}, 'user', 'message ' || g,
      now() - make_interval(days => ${daysAgo}) + g * interval '1 second'
    from generate_series(1, ${count}) g`);
}

/** The independent count: what a run starting now must archive and purge. */
async function expected(tenantId: string, archiveDays: number | null, purgeDays: number | null) {
  const now = Date.now();
  const purgeBefore = purgeDays === null ? null : new Date(now - purgeDays * DAY_MS).toISOString();
  const archiveBefore =
    archiveDays === null ? null : new Date(now - archiveDays * DAY_MS).toISOString();
  const [row] = await rows<{ purge: number; archive: number }>(sql`
    select
      count(*) filter (where ${purgeBefore}::timestamptz is not null
        and created_at < ${purgeBefore}::timestamptz)::int as purge,
      count(*) filter (where ${archiveBefore}::timestamptz is not null and not archived
        and created_at < ${archiveBefore}::timestamptz
        and (${purgeBefore}::timestamptz is null or created_at >= ${purgeBefore}::timestamptz))::int
        as archive
    from messages where tenant_id = ${tenantId}`);
  return { archived: row?.archive ?? 0, purged: row?.purge ?? 0 };
}

const mine = (result: RetentionResult, tenantId: string) => {
  const found = result.tenants.find((x) => x.tenant_id === tenantId);
  return {
    archived: found?.archived ?? 0,
    purged: found?.purged ?? 0,
    conversations_deleted: found?.conversations_deleted ?? 0,
  };
};

/** Runs until a run completes (earlier tests' tenants share the database), summing one tenant. */
async function runAll(tenantId: string, options: Parameters<typeof runRetention>[1] = {}) {
  const total = { archived: 0, purged: 0, conversations_deleted: 0, runs: 0 };
  for (;;) {
    const result = await runRetention(t.deps, options);
    expect(result.error).toBeUndefined();
    expect(result.skipped).toBe(false);
    const got = mine(result, tenantId);
    total.archived += got.archived;
    total.purged += got.purged;
    total.conversations_deleted += got.conversations_deleted;
    total.runs += 1;
    if (result.complete) return total;
  }
}

describe('the retention job', () => {
  test('archives and purges exactly what the policy says, per tenant', async () => {
    const a = await tenantWithPolicy({ archive_after_days: 30, purge_after_days: 90 });
    const b = await tenantWithPolicy({ archive_after_days: 7 });
    const c = await tenantWithPolicy({ purge_after_days: 10 });
    const untouched = await t.tenant('no policy');
    for (const tenant of [a, b, c, untouched]) {
      await seed(tenant.id, 'old', 120, 23);
      await seed(tenant.id, 'mid', 45, 17);
      await seed(tenant.id, 'recent', 2, 5);
    }
    const want = {
      a: await expected(a.id, 30, 90),
      b: await expected(b.id, 7, null),
      c: await expected(c.id, null, 10),
    };
    expect(want).toEqual({
      a: { archived: 17, purged: 23 },
      b: { archived: 40, purged: 0 },
      c: { archived: 0, purged: 40 },
    });
    const result = await runRetention(t.deps);
    expect(result).toMatchObject({ complete: true, skipped: false });
    expect(result.error).toBeUndefined();
    expect(mine(result, a.id)).toEqual({ ...want.a, conversations_deleted: 1 });
    expect(mine(result, b.id)).toEqual({ ...want.b, conversations_deleted: 0 });
    expect(mine(result, c.id)).toEqual({ ...want.c, conversations_deleted: 2 });
    expect(mine(result, untouched.id)).toEqual({
      archived: 0,
      purged: 0,
      conversations_deleted: 0,
    });
    const [left] = await rows<{ n: number; archived: number }>(
      sql`select count(*)::int as n, count(*) filter (where archived)::int as archived
          from messages where tenant_id = ${untouched.id}`,
    );
    expect(left).toEqual({ n: 45, archived: 0 });
    // A second run finds nothing left to do.
    const again = await runRetention(t.deps);
    expect(mine(again, a.id)).toEqual({ archived: 0, purged: 0, conversations_deleted: 0 });
  });

  test('hides archived messages unless asked, deletes purged ones, keeps summaries exact', async () => {
    const tenant = await tenantWithPolicy({ archive_after_days: 30, purge_after_days: 90 });
    const key = tenant.api_key;
    await seed(tenant.id, 'gone', 100, 4);
    await seed(tenant.id, 'mixed', 100, 3);
    await seed(tenant.id, 'mixed', 40, 6);
    await seed(tenant.id, 'mixed', 1, 2);
    const before = await t.call('GET', '/v1/conversations', { key });
    expect(before.json.conversations.map((x: any) => [x.id, x.message_count])).toEqual([
      ['gone', 4],
      ['mixed', 11],
    ]);
    await runAll(tenant.id);

    const visible = await t.call('GET', '/v1/messages?limit=100', { key });
    expect(visible.status).toBe(200);
    expect(visible.json.messages).toHaveLength(2);
    const all = await t.call('GET', '/v1/messages?limit=100&include_archived=true', { key });
    expect(all.json.messages).toHaveLength(8);
    const [purged] = await rows<{ n: number }>(
      sql`select count(*)::int as n from messages
          where tenant_id = ${tenant.id} and created_at < now() - interval '90 days'`,
    );
    expect(purged?.n).toBe(0);

    // The emptied conversation is deleted; the other's summary counts what is left.
    const after = await t.call('GET', '/v1/conversations', { key });
    expect(after.json.conversations).toHaveLength(1);
    expect(after.json.conversations[0]).toMatchObject({ id: 'mixed', message_count: 2 });
    const withArchived = await t.call('GET', '/v1/conversations?include_archived=true', { key });
    expect(withArchived.json.conversations[0]).toMatchObject({ id: 'mixed', message_count: 8 });
    const oldest = await rows<{ first: Date }>(
      sql`select min(created_at) as first from messages where tenant_id = ${tenant.id}`,
    );
    expect(withArchived.json.conversations[0].first_message_at).toBe(
      new Date(oldest[0]!.first).toISOString(),
    );
    expect((await t.call('GET', '/v1/conversations/gone', { key })).status).toBe(404);
  });

  test('gives exact counts over many small batches', async () => {
    const tenant = await tenantWithPolicy({ archive_after_days: 20, purge_after_days: 60 });
    await seed(tenant.id, 'one', 80, 53);
    await seed(tenant.id, 'two', 30, 71);
    await seed(tenant.id, 'three', 5, 9);
    const want = await expected(tenant.id, 20, 60);
    expect(want).toEqual({ archived: 71, purged: 53 });
    const got = await runAll(tenant.id, { batchSize: 7 });
    expect({ archived: got.archived, purged: got.purged }).toEqual(want);
  });

  test('stops between batches at its time limit, and the next run finishes', async () => {
    const tenant = await tenantWithPolicy({ archive_after_days: 20, purge_after_days: 60 });
    await seed(tenant.id, 'one', 80, 40);
    await seed(tenant.id, 'two', 30, 40);
    const want = await expected(tenant.id, 20, 60);
    const first = await runRetention(t.deps, { batchSize: 7, timeoutMs: 0 });
    expect(first.complete).toBe(false);
    expect(first.error).toBeUndefined();
    // At least one batch always runs, so a run given no time still progresses.
    expect(first.archived + first.purged).toBeGreaterThan(0);
    const rest = await runAll(tenant.id, { batchSize: 7 });
    expect(mine(first, tenant.id).archived + rest.archived).toBe(want.archived);
    expect(mine(first, tenant.id).purged + rest.purged).toBe(want.purged);
  });

  test('ignores a setting no date can express, and goes on with other tenants', async () => {
    const odd = await tenantWithPolicy({ purge_after_days: 1e300 });
    await seed(odd.id, 'one', 80, 3);
    const tenant = await tenantWithPolicy({ purge_after_days: 60 });
    await seed(tenant.id, 'one', 80, 3);
    const got = await runAll(tenant.id);
    expect(got.purged).toBe(3);
    const [left] = await rows<{ n: number }>(
      sql`select count(*)::int as n from messages where tenant_id = ${odd.id}`,
    );
    expect(left?.n).toBe(3);
  });

  test('stops between batches when shutdown aborts it', async () => {
    const tenant = await tenantWithPolicy({ purge_after_days: 60 });
    await seed(tenant.id, 'one', 80, 30);
    const stop = new AbortController();
    stop.abort();
    const result = await runRetention(t.deps, { batchSize: 7, signal: stop.signal });
    expect(result.complete).toBe(false);
    await runAll(tenant.id, { batchSize: 7 });
  });

  test('runs once at a time: a concurrent run is skipped at once', async () => {
    const tenant = await tenantWithPolicy({ purge_after_days: 60 });
    await seed(tenant.id, 'one', 80, 30);
    const [one, two] = await Promise.all([
      runRetention(t.deps, { batchSize: 7 }),
      runRetention(t.deps, { batchSize: 7 }),
    ]);
    const skipped = [one, two].filter((r) => r.skipped);
    expect(skipped).toHaveLength(1);
    expect(skipped[0]).toMatchObject({ reason: 'another run in progress', archived: 0, purged: 0 });
    expect([one, two].find((r) => !r.skipped)?.complete).toBe(true);
  });

  test('is skipped while another instance holds the lock', async () => {
    if (t.database.kind !== 'postgres') return;
    const other = postgres(process.env.TEST_DATABASE_URL!, { max: 1, onnotice: () => {} });
    try {
      const key = 0x747372657461696en.toString();
      const [row] = await other`select pg_try_advisory_lock(${key}::bigint) as locked`;
      expect(row?.locked).toBe(true);
      const result = await runRetention(t.deps);
      expect(result).toMatchObject({ skipped: true, reason: 'another run in progress' });
    } finally {
      await other.end();
    }
    expect((await runRetention(t.deps)).skipped).toBe(false);
  });
});

describe('retention queries', () => {
  test('use the indexes: no plan scans the messages table', async () => {
    const tenants = [];
    for (let i = 0; i < 10; i++) tenants.push(await tenantWithPolicy({ archive_after_days: 30 }));
    for (const tenant of tenants) {
      await seed(tenant.id, 'a', 100, 200);
      await seed(tenant.id, 'b', 40, 200);
      await seed(tenant.id, 'c', 1, 100);
    }
    await t.db.execute(sql`analyze messages`);
    await t.db.execute(sql`analyze conversations`);
    const id = tenants[0]!.id;
    const ago = (days: number) => new Date(Date.now() - days * DAY_MS);
    const statements = {
      purge: purgeBatch(id, ago(90), 5000),
      archive: archiveBatch(id, ago(30), 5000),
      lock: lockConversations(id, ['a', 'b']),
      deleteEmpty: deleteEmptyConversations(id, ['a', 'b']),
      policies: policiesQuery,
    };
    for (const [name, statement] of Object.entries(statements)) {
      const plan = (await rows<{ 'QUERY PLAN': string }>(sql`explain ${statement}`))
        .map((r) => r['QUERY PLAN'])
        .join('\n');
      // The plan is in the failure message, to see what the planner chose instead.
      expect({ name, seqScan: /Seq Scan on messages/.test(plan) ? plan : false }).toEqual({
        name,
        seqScan: false,
      });
      // Either tenant-leading index serves the purge (the planner picks by statistics).
      if (name === 'purge') expect(plan).toMatch(/ix_messages_tenant_(created|archived)/);
      // Likewise for the archive: which one depends on how many of the tenant's rows are archived.
      if (name === 'archive') expect(plan).toMatch(/ix_messages_tenant_(created|archived)/);
    }
  });
});

describe('the last run', () => {
  test('shows in health and metrics', async () => {
    const app = await buildTestApp();
    try {
      await app.db.execute(sql`delete from app_settings where key = ${LAST_RUN_SETTING}`);
      const before = await app.call('GET', '/v1/admin/health', { key: ADMIN_KEY });
      expect(before.json.checks.retention[0]).toMatchObject({
        status: 'pass',
        output: 'no run yet',
      });
      const tenant = await tenantWithPolicy({ archive_after_days: 30, purge_after_days: 90 });
      await seed(tenant.id, 'x', 100, 3);
      await seed(tenant.id, 'y', 40, 4);
      const result = await runRetention(app.deps);
      expect(result.complete).toBe(true);
      const health = await app.call('GET', '/v1/admin/health', { key: ADMIN_KEY });
      expect(health.json.checks.retention[0]).toMatchObject({
        status: 'pass',
        lastRunAt: result.started_at,
        archived: result.archived,
        purged: result.purged,
        complete: true,
      });
      const metrics = (await app.call('GET', '/metrics')).text;
      expect(metrics).toContain(`threadstore_retention_archived_total ${result.archived}`);
      expect(metrics).toContain(`threadstore_retention_purged_total ${result.purged}`);
      expect(metrics).toMatch(/threadstore_retention_last_run_timestamp_seconds \d{10}/);
      expect(metrics).toContain('threadstore_retention_last_run_duration_seconds');
      // Another instance (or this one after a restart) shows the stored run.
      const other = await buildTestApp();
      try {
        const stored = await other.call('GET', '/v1/admin/health', { key: ADMIN_KEY });
        expect(stored.json.checks.retention[0]).toMatchObject({ lastRunAt: result.started_at });
      } finally {
        await other.close();
      }
    } finally {
      await app.close();
    }
  });

  test('a failed run is a warning in health', async () => {
    const app = await buildTestApp();
    try {
      // A real failure inside the run: the database refuses to archive this tenant's messages.
      const tenant = await tenantWithPolicy({ archive_after_days: 1 });
      await seed(tenant.id, 'refused', 30, 3);
      const trigger = `retention_refuse_${tenant.id.replaceAll('-', '')}`;
      await t.db.execute(
        sql.raw(`create function ${trigger}() returns trigger language plpgsql as $$
          begin raise exception 'archiving refused'; end $$;
          create trigger ${trigger} before update on messages for each row
          when (new.tenant_id = '${tenant.id}') execute function ${trigger}()`),
      );
      let result: RetentionResult;
      try {
        result = await runRetention(app.deps);
      } finally {
        await t.db.execute(
          sql.raw(`drop trigger ${trigger} on messages; drop function ${trigger}()`),
        );
      }
      expect(result.error).toBeString();
      expect(result.complete).toBe(false);
      const health = await app.call('GET', '/v1/admin/health', { key: ADMIN_KEY });
      expect(health.json.checks.retention[0].status).toBe('warn');
      expect(health.json.checks.retention[0].output).toStartWith('last run failed');
    } finally {
      await app.close();
    }
  });
});

describe('POST /v1/admin/retention/run', () => {
  test('needs the admin key and returns the counts', async () => {
    const tenant = await tenantWithPolicy({ archive_after_days: 30, purge_after_days: 90 });
    await seed(tenant.id, 'x', 100, 3);
    await seed(tenant.id, 'y', 40, 4);
    expect((await t.call('POST', '/v1/admin/retention/run')).status).toBe(401);
    expect((await t.call('POST', '/v1/admin/retention/run', { key: tenant.api_key })).status).toBe(
      401,
    );
    const res = await t.call('POST', '/v1/admin/retention/run', { key: ADMIN_KEY });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ complete: true, skipped: false });
    expect(res.json.tenants).toContainEqual({
      tenant_id: tenant.id,
      archived: 4,
      purged: 3,
      conversations_deleted: 1,
    });
  });
});

afterAll(async () => {
  // Later files share the database: leave no policies that would act on their data.
  await t.db.execute(
    sql`update tenants set settings = settings - 'archive_after_days' - 'purge_after_days'
        where name = 'retention'`,
  );
});
