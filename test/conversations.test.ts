import { describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { rowsOf } from '../src/db/raw';
import { sharedApp } from './support/app';

const t = await sharedApp();

const post = (key: string, conversation_id: string, created_at?: string) =>
  t.call('POST', '/v1/messages', {
    key,
    body: { conversation_id, role: 'user', content: 'x', ...(created_at ? { created_at } : {}) },
  });

describe('conversation summaries', () => {
  test('count messages and give first and last times', async () => {
    const { api_key } = await t.tenant();
    await post(api_key, 'one', '2024-01-01T00:00:00.000Z');
    await post(api_key, 'one', '2024-01-03T00:00:00.000Z');
    await post(api_key, 'one', '2024-01-02T00:00:00.000Z');
    await post(api_key, 'two');
    const res = await t.call('GET', '/v1/conversations', { key: api_key });
    expect(res.status).toBe(200);
    expect(res.json.conversations.map((c: { id: string }) => c.id)).toEqual(['one', 'two']);
    expect(res.json.conversations[0]).toMatchObject({
      id: 'one',
      message_count: 3,
      first_message_at: '2024-01-01T00:00:00.000Z',
      last_message_at: '2024-01-03T00:00:00.000Z',
    });
    const one = await t.call('GET', '/v1/conversations/one', { key: api_key });
    expect(one.json).toEqual(res.json.conversations[0]);
  });

  test('stay exact when many clients write to one conversation at once', async () => {
    const { api_key } = await t.tenant();
    const results = await Promise.all(Array.from({ length: 64 }, () => post(api_key, 'hot')));
    expect(results.every((r) => r.status === 201)).toBe(true);
    const res = await t.call('GET', '/v1/conversations/hot', { key: api_key });
    expect(res.json.message_count).toBe(64);
  });

  test('page in creation order, both directions, without repeats', async () => {
    const { api_key } = await t.tenant();
    for (let i = 0; i < 7; i++) await post(api_key, `c${i}`);
    const ids: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
      const res = await t.call('GET', `/v1/conversations?limit=3${q}`, { key: api_key });
      ids.push(...res.json.conversations.map((c: { id: string }) => c.id));
      cursor = res.json.next_cursor;
    } while (cursor);
    expect(ids).toEqual(['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6']);
    const desc = await t.call('GET', '/v1/conversations?order=desc&limit=200', { key: api_key });
    expect(desc.json.conversations.map((c: { id: string }) => c.id)).toEqual([...ids].reverse());
  });

  test('listing uses the conversation index, not a scan of the tenant’s messages', async () => {
    const { id } = await t.tenant();
    const plan = rowsOf<{ 'QUERY PLAN': string }>(
      await t.db.execute(sql`explain
        select c.id, s.* from conversations c cross join lateral (
          select count(*) from messages m
          where m.tenant_id = c.tenant_id and m.conversation_id = c.id and m.archived = false) s
        where c.tenant_id = ${id} order by c.created_at, c.id limit 51`),
    )
      .map((r) => r['QUERY PLAN'])
      .join('\n');
    expect(plan).not.toContain('Seq Scan on messages');
  });
});

describe('deleting a conversation', () => {
  test('removes it and all its messages, and nothing else', async () => {
    const { api_key } = await t.tenant();
    const kept = await post(api_key, 'keep');
    const gone = await post(api_key, 'gone');
    await post(api_key, 'gone');
    const del = await t.call('DELETE', '/v1/conversations/gone', { key: api_key });
    expect(del.status).toBe(204);
    expect((await t.call('GET', `/v1/messages/${gone.json.id}`, { key: api_key })).status).toBe(
      404,
    );
    expect((await t.call('GET', `/v1/messages/${kept.json.id}`, { key: api_key })).status).toBe(
      200,
    );
    expect((await t.call('GET', '/v1/conversations/gone', { key: api_key })).status).toBe(404);
    expect((await t.call('DELETE', '/v1/conversations/gone', { key: api_key })).status).toBe(404);
    const list = await t.call('GET', '/v1/messages?conversation_id=gone', { key: api_key });
    expect(list.json.messages).toEqual([]);
  });

  test('rejects an invalid conversation id with 422', async () => {
    const { api_key } = await t.tenant();
    const res = await t.call('DELETE', `/v1/conversations/${'a'.repeat(129)}`, { key: api_key });
    expect(res.status).toBe(422);
  });
});

describe('writing while the conversation is deleted', () => {
  test('a write after the conversation was deleted creates it again', async () => {
    const { api_key } = await t.tenant();
    // The first writes make the process remember the conversation as existing.
    expect((await post(api_key, 'gone')).status).toBe(201);
    expect((await post(api_key, 'gone')).status).toBe(201);
    expect((await t.call('DELETE', '/v1/conversations/gone', { key: api_key })).status).toBe(204);
    expect((await t.call('GET', '/v1/conversations/gone', { key: api_key })).status).toBe(404);
    const again = await post(api_key, 'gone');
    expect(again.status).toBe(201);
    const summary = await t.call('GET', '/v1/conversations/gone', { key: api_key });
    expect(summary.status).toBe(200);
    expect(summary.json.message_count).toBe(1);
  });

  test('every write either lands in a live conversation or fails cleanly; none is orphaned', async () => {
    const { api_key, id } = await t.tenant();
    let running = true;
    const deleter = (async () => {
      while (running) {
        await t.call('DELETE', '/v1/conversations/churn', { key: api_key });
      }
    })();
    const results = await Promise.all(Array.from({ length: 60 }, () => post(api_key, 'churn')));
    running = false;
    await deleter;
    expect(results.every((r) => r.status === 201 || r.status === 409)).toBe(true);
    const orphans = rowsOf<{ n: number }>(
      await t.db.execute(sql`select count(*)::int as n from messages m where m.tenant_id = ${id}
        and not exists (select 1 from conversations c where c.tenant_id = m.tenant_id and c.id = m.conversation_id)`),
    );
    expect(orphans[0]!.n).toBe(0);
  });
});

describe('archiving a conversation', () => {
  test('hides its messages unless include_archived, keeps them, and can be undone', async () => {
    const { api_key } = await t.tenant();
    for (let i = 0; i < 3; i++) await post(api_key, 'old');
    await post(api_key, 'other');
    const archived = await t.call('POST', '/v1/conversations/old/archive', { key: api_key });
    expect(archived.status).toBe(200);
    expect(archived.json).toEqual({ archived: 3 });
    const visible = await t.call('GET', '/v1/messages?conversation_id=old', { key: api_key });
    expect(visible.json.messages).toEqual([]);
    const all = await t.call('GET', '/v1/messages?conversation_id=old&include_archived=true', {
      key: api_key,
    });
    expect(all.json.messages.length).toBe(3);
    expect(
      all.json.messages.every(
        (m: { archived: boolean; archived_at: string | null }) => m.archived && m.archived_at,
      ),
    ).toBe(true);
    const summary = await t.call('GET', '/v1/conversations/old', { key: api_key });
    expect(summary.json.message_count).toBe(0);
    const withArchived = await t.call('GET', '/v1/conversations/old?include_archived=true', {
      key: api_key,
    });
    expect(withArchived.json.message_count).toBe(3);
    expect(
      (await t.call('GET', '/v1/conversations/other', { key: api_key })).json.message_count,
    ).toBe(1);
    const again = await t.call('POST', '/v1/conversations/old/archive', { key: api_key });
    expect(again.json).toEqual({ archived: 0 });
    const restored = await t.call('POST', '/v1/conversations/old/unarchive', { key: api_key });
    expect(restored.json).toEqual({ unarchived: 3 });
    const back = await t.call('GET', '/v1/messages?conversation_id=old', { key: api_key });
    expect(
      back.json.messages.every(
        (m: { archived: boolean; archived_at: string | null }) =>
          !m.archived && m.archived_at === null,
      ),
    ).toBe(true);
    expect(back.json.messages.length).toBe(3);
  });

  test('answers 404 for a conversation of another tenant or none', async () => {
    const a = await t.tenant();
    const b = await t.tenant();
    await post(a.api_key, 'mine');
    expect(
      (await t.call('POST', '/v1/conversations/mine/archive', { key: b.api_key })).status,
    ).toBe(404);
    expect(
      (await t.call('POST', '/v1/conversations/none/unarchive', { key: a.api_key })).status,
    ).toBe(404);
    const list = await t.call('GET', '/v1/messages?conversation_id=mine', { key: a.api_key });
    expect(list.json.messages.length).toBe(1);
  });
});
