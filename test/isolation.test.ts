import { describe, expect, test } from 'bun:test';
import { sharedApp } from './support/app';

const t = await sharedApp();

describe('one tenant never sees another’s data', () => {
  test('by id, by list, by conversation, by cursor, and cannot delete it', async () => {
    const a = await t.tenant('A');
    const b = await t.tenant('B');
    const conv = 'shared-name';
    const created = await t.call('POST', '/v1/messages/batch', {
      key: a.api_key,
      body: {
        messages: Array.from({ length: 5 }, (_, i) => ({
          conversation_id: conv,
          role: 'user',
          content: `secret ${i}`,
        })),
      },
    });
    expect(created.status).toBe(201);
    const id = created.json.messages[0].id;

    expect((await t.call('GET', `/v1/messages/${id}`, { key: b.api_key })).status).toBe(404);
    expect((await t.call('DELETE', `/v1/messages/${id}`, { key: b.api_key })).status).toBe(404);
    const list = await t.call('GET', `/v1/messages?conversation_id=${conv}`, { key: b.api_key });
    expect(list.json.messages).toEqual([]);
    expect((await t.call('GET', '/v1/messages', { key: b.api_key })).json.messages).toEqual([]);
    expect(
      (await t.call('GET', '/v1/conversations', { key: b.api_key })).json.conversations,
    ).toEqual([]);
    expect((await t.call('GET', `/v1/conversations/${conv}`, { key: b.api_key })).status).toBe(404);
    expect((await t.call('DELETE', `/v1/conversations/${conv}`, { key: b.api_key })).status).toBe(
      404,
    );

    // A's cursor is refused for B, even for the very same query.
    const page = await t.call('GET', `/v1/messages?conversation_id=${conv}&limit=2`, {
      key: a.api_key,
    });
    const cursor = encodeURIComponent(page.json.next_cursor);
    const stolen = await t.call(
      'GET',
      `/v1/messages?conversation_id=${conv}&limit=2&cursor=${cursor}`,
      {
        key: b.api_key,
      },
    );
    expect(stolen.status).toBe(400);
    expect(stolen.json.error.code).toBe('invalid_cursor');

    // B writing into a conversation of the same name stays apart from A's.
    await t.call('POST', '/v1/messages', {
      key: b.api_key,
      body: { conversation_id: conv, role: 'user', content: 'b' },
    });
    const aConv = await t.call('GET', `/v1/conversations/${conv}`, { key: a.api_key });
    expect(aConv.json.message_count).toBe(5);
    const bConv = await t.call('GET', `/v1/conversations/${conv}`, { key: b.api_key });
    expect(bConv.json.message_count).toBe(1);

    // Everything of A's is intact.
    expect((await t.call('GET', `/v1/messages/${id}`, { key: a.api_key })).json.content).toBe(
      'secret 0',
    );
  });

  test('the tenant comes from the key, never from the body', async () => {
    const a = await t.tenant('A');
    const b = await t.tenant('B');
    const res = await t.call('POST', '/v1/messages', {
      key: b.api_key,
      body: { conversation_id: 'x', role: 'user', content: 'c', tenant_id: a.id },
    });
    expect(res.status).toBe(422);
  });
});
