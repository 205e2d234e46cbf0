import { describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { rowsOf } from '../src/db/raw';
import { sharedApp } from './support/app';

const t = await sharedApp();

async function countMessages(tenantId: string): Promise<number> {
  const rows = rowsOf<{ n: number }>(
    await t.db.execute(sql`select count(*)::int as n from messages where tenant_id = ${tenantId}`),
  );
  return rows[0]!.n;
}

const msg = (over: Record<string, unknown> = {}) => ({
  conversation_id: 'conv-1',
  role: 'user',
  content: 'hello',
  ...over,
});

describe('storing a message', () => {
  test('returns 201 with the stored message and a time-ordered id', async () => {
    const { api_key } = await t.tenant();
    const res = await t.call('POST', '/v1/messages', {
      key: api_key,
      body: msg({ metadata: { source: 'web', n: 1 } }),
    });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({
      conversation_id: 'conv-1',
      role: 'user',
      content: 'hello',
      metadata: { source: 'web', n: 1 },
      archived: false,
      archived_at: null,
      name: null,
      tool_calls: null,
    });
    // UUIDv7: version nibble 7.
    expect(res.json.id).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    expect(Date.now() - Date.parse(res.json.created_at)).toBeLessThan(10_000);
    const got = await t.call('GET', `/v1/messages/${res.json.id}`, { key: api_key });
    expect(got.status).toBe(200);
    expect(got.json).toEqual(res.json);
  });

  test('stores chat-completion tool calls as they are, with empty content', async () => {
    const { api_key } = await t.tenant();
    const toolCalls = [
      { id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"x"}' } },
    ];
    const call = await t.call('POST', '/v1/messages', {
      key: api_key,
      body: msg({ role: 'assistant', content: '', tool_calls: toolCalls }),
    });
    expect(call.status).toBe(201);
    expect(call.json.tool_calls).toEqual(toolCalls);
    const result = await t.call('POST', '/v1/messages', {
      key: api_key,
      body: msg({ role: 'tool', content: '42', tool_call_id: 'call_1', name: 'lookup' }),
    });
    expect(result.status).toBe(201);
    expect(result.json).toMatchObject({ tool_call_id: 'call_1', name: 'lookup' });
  });

  test('rejects empty content without tool calls', async () => {
    const { api_key, id } = await t.tenant();
    const res = await t.call('POST', '/v1/messages', { key: api_key, body: msg({ content: '' }) });
    expect(res.status).toBe(422);
    expect(res.json.error.code).toBe('validation_failed');
    expect(await countMessages(id)).toBe(0);
  });

  test('accepts an imported created_at in the past and rejects one in the future', async () => {
    const { api_key } = await t.tenant();
    const past = '2020-02-03T04:05:06.789Z';
    const ok = await t.call('POST', '/v1/messages', {
      key: api_key,
      body: msg({ created_at: past }),
    });
    expect(ok.status).toBe(201);
    expect(ok.json.created_at).toBe(past);
    const future = new Date(Date.now() + 60_000).toISOString();
    const bad = await t.call('POST', '/v1/messages', {
      key: api_key,
      body: msg({ created_at: future }),
    });
    expect(bad.status).toBe(422);
    const notADate = await t.call('POST', '/v1/messages', {
      key: api_key,
      body: msg({ created_at: 'yesterday' }),
    });
    expect(notADate.status).toBe(422);
  });

  test('deletes a message (204) and then answers 404 for it', async () => {
    const { api_key } = await t.tenant();
    const created = await t.call('POST', '/v1/messages', { key: api_key, body: msg() });
    const del = await t.call('DELETE', `/v1/messages/${created.json.id}`, { key: api_key });
    expect(del.status).toBe(204);
    expect(del.text).toBe('');
    expect((await t.call('GET', `/v1/messages/${created.json.id}`, { key: api_key })).status).toBe(
      404,
    );
    const again = await t.call('DELETE', `/v1/messages/${created.json.id}`, { key: api_key });
    expect(again.status).toBe(404);
    expect(again.json.error.code).toBe('not_found');
  });
});

describe('storing a batch', () => {
  test('stores up to 100 messages in the order sent', async () => {
    const { api_key, id } = await t.tenant();
    const messages = Array.from({ length: 100 }, (_, i) =>
      msg({ content: `m${i}`, conversation_id: `c${i % 3}` }),
    );
    const res = await t.call('POST', '/v1/messages/batch', { key: api_key, body: { messages } });
    expect(res.status).toBe(201);
    expect(res.json.messages.map((m: { content: string }) => m.content)).toEqual(
      messages.map((m) => m.content),
    );
    expect(await countMessages(id)).toBe(100);
  });

  test('is all or nothing: one invalid message stores none', async () => {
    const { api_key, id } = await t.tenant();
    const messages = [msg(), msg(), msg({ content: '', conversation_id: 'other' })];
    const res = await t.call('POST', '/v1/messages/batch', { key: api_key, body: { messages } });
    expect(res.status).toBe(422);
    expect(res.json.error.details[0].path).toBe('/messages/2/content');
    expect(await countMessages(id)).toBe(0);
  });

  test('is all or nothing when the database rejects a row mid-batch', async () => {
    const { api_key, id } = await t.tenant();
    // A real database failure on the second row: a trigger that refuses one marked content.
    const marker = `explode-${id}`;
    await t.db.execute(
      sql.raw(`create or replace function test_refuse_marked() returns trigger language plpgsql as $$
        begin if new.content like 'explode-%' then raise exception 'refused by test trigger'; end if;
        return new; end $$`),
    );
    await t.db.execute(sql.raw(`drop trigger if exists test_refuse_marked on messages`));
    await t.db.execute(
      sql.raw(`create trigger test_refuse_marked before insert on messages
        for each row execute function test_refuse_marked()`),
    );
    try {
      const messages = [msg(), msg({ content: marker }), msg()];
      const res = await t.call('POST', '/v1/messages/batch', { key: api_key, body: { messages } });
      expect(res.status).toBe(500);
      expect(res.json.error.code).toBe('internal_error');
      expect(res.text).not.toContain('refused by test trigger');
      expect(await countMessages(id)).toBe(0);
      // The unexpected failure is logged under the request id with its class, SQLSTATE,
      // statement and stack frames, and none of the message texts (which quote values).
      const index = t.logs.lines.findIndex(
        (l) => l.msg === 'unhandled error' && l.request_id === res.json.error.request_id,
      );
      const logged = t.logs.lines[index] as { err?: Record<string, any> } | undefined;
      expect(logged?.err).toMatchObject({
        type: 'PostgresError',
        code: 'P0001',
        statement: 'insert messages',
      });
      expect(logged?.err?.stack).toContain(' at ');
      expect(t.logs.raw[index]).not.toContain('refused by test trigger');
      expect(t.logs.raw[index]).not.toContain(marker);
    } finally {
      await t.db.execute(sql.raw(`drop trigger if exists test_refuse_marked on messages`));
    }
  });

  test('rejects an empty batch and one of 101', async () => {
    const { api_key, id } = await t.tenant();
    const empty = await t.call('POST', '/v1/messages/batch', {
      key: api_key,
      body: { messages: [] },
    });
    expect(empty.status).toBe(422);
    const over = await t.call('POST', '/v1/messages/batch', {
      key: api_key,
      body: { messages: Array.from({ length: 101 }, () => msg()) },
    });
    expect(over.status).toBe(422);
    expect(await countMessages(id)).toBe(0);
  });
});

describe('listing messages', () => {
  async function seed(key: string, conversation: string, n: number) {
    const messages = Array.from({ length: n }, (_, i) =>
      msg({
        conversation_id: conversation,
        content: `${conversation}-${i}`,
        // Several rows share each timestamp, so the id tie-breaker is exercised.
        created_at: new Date(Date.UTC(2024, 0, 1, 0, 0, Math.floor(i / 3))).toISOString(),
      }),
    );
    for (let i = 0; i < messages.length; i += 100) {
      const res = await t.call('POST', '/v1/messages/batch', {
        key,
        body: { messages: messages.slice(i, i + 100) },
      });
      expect(res.status).toBe(201);
    }
  }

  async function pageAll(key: string, query: string) {
    const seen: { id: string; content: string; created_at: string }[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `${query}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const res = await t.call('GET', `/v1/messages?${q}`, { key });
      expect(res.status).toBe(200);
      seen.push(...res.json.messages);
      cursor = res.json.next_cursor;
      pages++;
    } while (cursor && pages < 1000);
    return { seen, pages };
  }

  test('lists and gets each message exactly as it was stored, with the usual headers', async () => {
    const { api_key } = await t.tenant();
    const hostile = 'quote " backslash \\ tab \t newline \n bell \u0007 emoji 🧵 rtl שלום <b>&amp;';
    const created = await t.call('POST', '/v1/messages/batch', {
      key: api_key,
      body: {
        messages: [
          msg({
            conversation_id: 'exact',
            content: hostile,
            name: 'n"1',
            metadata: {
              f: 1.5,
              big: 12345678901,
              nested: { a: [1, 'x', null, true] },
              s: '\u2028',
            },
          }),
          msg({
            conversation_id: 'exact',
            role: 'assistant',
            content: '',
            tool_calls: [
              { id: 'c1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } },
            ],
          }),
          msg({ conversation_id: 'exact', role: 'tool', content: 'r', tool_call_id: 'c1' }),
        ],
      },
    });
    expect(created.status).toBe(201);
    const list = await t.call('GET', '/v1/messages?conversation_id=exact', { key: api_key });
    expect(list.status).toBe(200);
    expect(list.headers.get('content-type')).toStartWith('application/json');
    expect(list.headers.get('x-request-id')).toBeTruthy();
    expect(list.headers.get('ratelimit-limit')).toBeTruthy();
    expect(list.json).toEqual({ messages: created.json.messages, next_cursor: null });
    for (const m of created.json.messages) {
      const got = await t.call('GET', `/v1/messages/${m.id}`, { key: api_key });
      expect(got.json).toEqual(m);
      expect(got.headers.get('x-request-id')).toBeTruthy();
    }
  });

  test('pages through a conversation in time order without repeats or gaps', async () => {
    const { api_key } = await t.tenant();
    await seed(api_key, 'a', 125);
    await seed(api_key, 'b', 10);
    const { seen, pages } = await pageAll(api_key, 'conversation_id=a&limit=20');
    expect(pages).toBe(7);
    expect(seen.length).toBe(125);
    expect(new Set(seen.map((m) => m.id)).size).toBe(125);
    const keys = seen.map((m) => `${m.created_at}|${m.id}`);
    expect(keys).toEqual([...keys].sort());
  });

  test('orders newest first with order=desc', async () => {
    const { api_key } = await t.tenant();
    await seed(api_key, 'a', 30);
    const asc = await pageAll(api_key, 'conversation_id=a&limit=7');
    const desc = await pageAll(api_key, 'conversation_id=a&limit=7&order=desc');
    expect(desc.seen.map((m) => m.id)).toEqual(asc.seen.map((m) => m.id).reverse());
  });

  test('lists all of a tenant’s messages without conversation_id', async () => {
    const { api_key } = await t.tenant();
    await seed(api_key, 'a', 5);
    await seed(api_key, 'b', 6);
    const { seen } = await pageAll(api_key, 'limit=4');
    expect(seen.length).toBe(11);
  });

  test('defaults to 50 per page and accepts 1 and 200 but not 0 or 201', async () => {
    const { api_key } = await t.tenant();
    await seed(api_key, 'a', 60);
    const first = await t.call('GET', '/v1/messages?conversation_id=a', { key: api_key });
    expect(first.json.messages.length).toBe(50);
    expect(first.json.next_cursor).toBeString();
    for (const [limit, status] of [
      [1, 200],
      [200, 200],
      [0, 422],
      [201, 422],
      [-1, 422],
    ] as const) {
      const res = await t.call('GET', `/v1/messages?limit=${limit}`, { key: api_key });
      expect(res.status).toBe(status);
    }
  });

  test('never repeats or skips committed messages while others are being inserted', async () => {
    const { api_key } = await t.tenant();
    await seed(api_key, 'live', 150);
    const before = await pageAll(api_key, 'conversation_id=live&limit=1');
    const committed = new Set(before.seen.map((m) => m.id));

    let writing = true;
    const writers = Array.from({ length: 4 }, async () => {
      while (writing) {
        await t.call('POST', '/v1/messages', {
          key: api_key,
          body: msg({ conversation_id: 'live', content: 'concurrent' }),
        });
      }
    });
    const during = await pageAll(api_key, 'conversation_id=live&limit=9');
    writing = false;
    await Promise.all(writers);

    const ids = during.seen.map((m) => m.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of committed) expect(ids).toContain(id);
  });

  test('rejects a forged or altered cursor with 400', async () => {
    const { api_key } = await t.tenant();
    await seed(api_key, 'a', 5);
    const first = await t.call('GET', '/v1/messages?conversation_id=a&limit=2', { key: api_key });
    const cursor: string = first.json.next_cursor;
    const [payload, mac] = cursor.split('.');
    const forgedPayload = Buffer.from(
      JSON.stringify({ k: '1970-01-01T00:00:00.000Z', i: '00000000-0000-0000-0000-000000000000' }),
    ).toString('base64url');
    for (const bad of [
      `${forgedPayload}.${mac}`,
      `${payload}.${mac!.slice(0, -2)}AA`,
      'not-a-cursor',
      `${payload}`,
    ]) {
      const res = await t.call(
        'GET',
        `/v1/messages?conversation_id=a&cursor=${encodeURIComponent(bad)}`,
        {
          key: api_key,
        },
      );
      expect(res.status).toBe(400);
      expect(res.json.error.code).toBe('invalid_cursor');
    }
    // A cursor is bound to its query too: reusing it for another conversation is refused.
    const other = await t.call(
      'GET',
      `/v1/messages?conversation_id=b&cursor=${encodeURIComponent(cursor)}`,
      {
        key: api_key,
      },
    );
    expect(other.status).toBe(400);
  });
});
