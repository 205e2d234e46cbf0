// Every query the service runs routinely in the background must reach messages by index only.
// Checked on a database of its own, seeded with enough rows across tenants that the planner
// would choose a sequential scan if a query gave it no index to use.
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { type SQL, sql } from 'drizzle-orm';
import { rowsOf } from '../src/db/raw';
import { backlogStatement, claimStatement } from '../src/embeddings/worker';
import { buildTestApp, type TestApp } from './support/app';
import { createDatabase } from '../harness/postgres';

let t: TestApp;

beforeAll(async () => {
  const url = await createDatabase(
    process.env.TEST_DATABASE_URL!,
    `plans_${crypto.randomUUID().slice(0, 8)}`,
  );
  t = await buildTestApp({ DATABASE_URL: url });
  const tenants: string[] = [];
  for (let i = 0; i < 20; i++) tenants.push((await t.tenant(`plans ${i}`)).id);
  for (const id of tenants) {
    await t.db.execute(sql`insert into conversations (tenant_id, id)
      select ${id}, 'c' || g from generate_series(1, 10) g`);
    await t.db.execute(sql`
      insert into messages (id, tenant_id, conversation_id, role, content, created_at)
      select gen_random_uuid(), ${id}, 'c' || (g % 10 + 1), 'user', 'message ' || g,
        now() - make_interval(secs => g * 60)
      from generate_series(1, 1500) g`);
  }
  // A realistic queue: most messages embedded, a few pending.
  await t.db.execute(sql`update message_search set embedding_status = 'ready'`);
  await t.db.execute(sql`update message_search set embedding_status = 'pending'
    where message_id in (select message_id from message_search order by message_id desc limit 50)`);
  await t.db.execute(sql`analyze`);
}, 60_000);
afterAll(() => t.close());

async function plan(statement: SQL): Promise<string> {
  const rows = rowsOf<{ 'QUERY PLAN': string }>(await t.db.execute(sql`explain ${statement}`));
  return rows.map((r) => r['QUERY PLAN']).join('\n');
}

test('the embedding worker’s claim and the backlog gauges never scan messages', async () => {
  for (const [name, statement] of [
    ['claim', claimStatement(64, 60_000)],
    ['backlog', backlogStatement()],
  ] as const) {
    const p = await plan(statement);
    expect({ name, scan: /Seq Scan on (messages|message_search)\b/.test(p) ? p : false }).toEqual({
      name,
      scan: false,
    });
  }
});

test('conversation summaries read the conversation index, not the tenant’s messages', async () => {
  const [tenant] = rowsOf<{ id: string }>(await t.db.execute(sql`select id from tenants limit 1`));
  const p = await plan(sql`
    select c.id, s.* from conversations c cross join lateral (
      select count(*)::int, min(m.created_at), max(m.created_at) from messages m
      where m.tenant_id = c.tenant_id and m.conversation_id = c.id and m.archived = false) s
    where c.tenant_id = ${tenant!.id} order by c.created_at, c.id limit 51`);
  expect(p).not.toContain('Seq Scan on messages');
  expect(p).toContain('ix_messages_conversation');
});
