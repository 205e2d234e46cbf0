// The retention job started on every instance of a fleet at once: a PostgreSQL advisory lock
// lets exactly one run do the work, with exact counts, while the others answer `skipped` at once.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { BUILD_TIMEOUT_MS, killAllServers } from '../../harness/binary';
import { faultBinary, send } from '../faults/support';
import { ADMIN_KEY, type Fleet, startFleet } from './support';

/** Small batches, so the working run holds the lock long after the others have asked for it. */
const BATCH_SIZE = 10;

let fleet: Fleet;

beforeAll(async () => {
  await faultBinary();
  fleet = await startFleet('retention', { RETENTION_BATCH_SIZE: String(BATCH_SIZE) });
}, BUILD_TIMEOUT_MS);

afterAll(async () => {
  await fleet?.close();
  await killAllServers();
});

/** `count` messages in a conversation, created about `daysAgo` days ago (a second apart). */
async function seed(tenantId: string, conversation: string, daysAgo: number, count: number) {
  await fleet.sql`
    insert into conversations (tenant_id, id) values (${tenantId}, ${conversation})
    on conflict do nothing`;
  await fleet.sql`
    insert into messages (id, tenant_id, conversation_id, role, content, created_at)
    select gen_random_uuid(), ${tenantId}, ${conversation}, 'user', 'message ' || g,
      now() - make_interval(days => ${daysAgo}) + g * interval '1 second'
    from generate_series(1, ${count}) g`;
}

describe('retention started on three instances at once', () => {
  test('exactly one run does the work, with exact counts; the others are skipped', async () => {
    const tenant = await fleet.createTenant({ archive_after_days: 30, purge_after_days: 90 });
    const bystander = await fleet.createTenant();
    await seed(tenant.id, 'old', 120, 300);
    await seed(tenant.id, 'mixed', 120, 300);
    await seed(tenant.id, 'mixed', 45, 200);
    await seed(tenant.id, 'mid', 45, 300);
    await seed(tenant.id, 'recent', 2, 50);
    await seed(bystander.id, 'old', 120, 100);

    const runs = await Promise.all(
      fleet.instances.map((s) => send(s, 'POST', '/v1/admin/retention/run', ADMIN_KEY)),
    );
    expect(runs.map((r) => r.status)).toEqual([200, 200, 200]);
    const worked = runs.filter((r) => r.body.skipped === false);
    const skipped = runs.filter((r) => r.body.skipped === true);
    console.info(
      `fleet retention: run took ${worked.map((r) => r.body.duration_ms)} ms, ` +
        `skips ${skipped.map((r) => r.body.duration_ms)} ms`,
    );
    expect(worked.length).toBe(1);
    expect(skipped.length).toBe(2);
    const result = worked[0]!.body;
    expect(result).toMatchObject({
      complete: true,
      skipped: false,
      purged: 600,
      archived: 500,
      conversations_deleted: 1,
      tenants: [{ tenant_id: tenant.id, purged: 600, archived: 500, conversations_deleted: 1 }],
    });
    expect(result.error).toBeUndefined();
    for (const r of skipped) {
      expect(r.body).toMatchObject({ skipped: true, archived: 0, purged: 0, tenants: [] });
      expect(r.body.reason).toBeString();
    }

    // The database agrees.
    const [counts] = await fleet.sql<
      { total: number; archived: number; old: number; recent_archived: number }[]
    >`
      select count(*)::int as total,
        count(*) filter (where archived)::int as archived,
        count(*) filter (where created_at < now() - interval '90 days')::int as old,
        count(*) filter (where archived and created_at > now() - interval '30 days')::int
          as recent_archived
      from messages where tenant_id = ${tenant.id}`;
    expect(counts).toEqual({ total: 550, archived: 500, old: 0, recent_archived: 0 });
    const conversations = await fleet.sql<{ id: string }[]>`
      select id from conversations where tenant_id = ${tenant.id} order by id`;
    expect(conversations.map((c) => c.id)).toEqual(['mid', 'mixed', 'recent']);
    const [others] = await fleet.sql<{ total: number; archived: number }[]>`
      select count(*)::int as total, count(*) filter (where archived)::int as archived
      from messages where tenant_id = ${bystander.id}`;
    expect(others).toEqual({ total: 100, archived: 0 });
    // The run is recorded once, for every instance's health report.
    const [last] = await fleet.sql<{ value: { purged: number; archived: number } }[]>`
      select value from app_settings where key = 'retention_last_run'`;
    expect(last?.value).toMatchObject({ purged: 600, archived: 500, skipped: false });
  }, 60_000);
});
