// Input PostgreSQL cannot hold is a 4xx in the one error shape, never a 500: caught by
// validation where it can be (times, ids), and by the database error mapping under it.
import { afterAll, describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { mapDatabaseError } from '../src/db/errors';
import { buildTestApp, sharedApp } from './support/app';

const t = await sharedApp();
const { api_key: key } = await t.tenant('refused values');

afterAll(async () => {
  await bigContent?.close();
});

/** A marker planted in what is sent; it must appear in no answer and no log line. */
const MARKER = `mk${crypto.randomUUID().slice(0, 8)}`;

/** Asserts a 4xx in the one error shape, with nothing of the request echoed. */
function expectRefused(
  res: { status: number; json: any; text: string },
  status: number,
  code: string,
) {
  expect({ status: res.status, code: res.json?.error?.code }).toEqual({ status, code });
  expect(Object.keys(res.json)).toEqual(['error']);
  expect(res.json.error.request_id).toBeString();
  expect(res.text).not.toContain(MARKER);
}

async function logsOf(requestId: string) {
  await Bun.sleep(5);
  return t.logs.raw.filter((l) => l.includes(requestId));
}

/** One MCP tool call, answered as JSON. */
async function tool(name: string, args: Record<string, unknown>) {
  const res = await t.call('POST', '/mcp', {
    key,
    body: { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: args } },
    headers: { accept: 'application/json, text/event-stream' },
  });
  expect(res.status).toBe(200);
  return res.json.result as { isError?: boolean; content: { text: string }[] };
}

describe('times PostgreSQL cannot hold', () => {
  // Year 10000 in UTC, year 0 in UTC, written with fields that each look fine.
  const tooLate = [
    '9999-12-31T23:59:59-23:59',
    '9999-12-31T23:00:00-01:00',
    '9999-12-31T23:59:59.999-00:01',
  ];
  const tooEarly = ['0001-01-01T00:00:00+00:01', '0001-01-01T00:59:59+01:00'];

  test('a search bounded by one gets 422 (the time from issue 17 among them)', async () => {
    for (const time of [...tooLate, ...tooEarly]) {
      for (const field of ['created_before', 'created_after']) {
        const res = await t.call('POST', '/v1/search', {
          key,
          body: { query: `hello ${MARKER}`, [field]: time },
        });
        expectRefused(res, 422, 'validation_failed');
        expect(res.json.error.details).toEqual([
          { in: 'body', path: `/${field}`, message: expect.any(String) },
        ]);
        const lines = await logsOf(res.json.error.request_id);
        expect(lines.length).toBeGreaterThan(0);
        for (const line of lines) expect(line).not.toContain(MARKER);
      }
    }
  });

  test('the ends of the range themselves are accepted', async () => {
    for (const time of [
      '9999-12-31T23:59:59.999Z',
      '9999-12-31T23:59:59+00:00',
      '9999-12-31T00:00:00-23:59',
      '0001-01-01T00:00:00Z',
      '0001-01-01T00:00:00-23:59',
      '0001-01-01T23:59:00+23:59',
    ]) {
      for (const field of ['created_before', 'created_after']) {
        const res = await t.call('POST', '/v1/search', {
          key,
          body: { query: 'hello', [field]: time },
        });
        expect({ time, field, status: res.status }).toEqual({ time, field, status: 200 });
      }
    }
  });

  test('a message or a batch created at one gets 422', async () => {
    const message = { conversation_id: 'times', role: 'user', content: MARKER };
    for (const time of [...tooLate, ...tooEarly]) {
      const one = await t.call('POST', '/v1/messages', {
        key,
        body: { ...message, created_at: time },
      });
      expectRefused(one, 422, 'validation_failed');
      const batch = await t.call('POST', '/v1/messages/batch', {
        key,
        body: { messages: [message, { ...message, created_at: time }] },
      });
      expectRefused(batch, 422, 'validation_failed');
      expect(batch.json.error.details[0].path).toBe('/messages/1/created_at');
    }
    const earliest = await t.call('POST', '/v1/messages', {
      key,
      body: { ...message, created_at: '0001-01-01T00:00:00-23:59' },
    });
    expect(earliest.status).toBe(201);
    expect(earliest.json.created_at).toBe('0001-01-01T23:59:00.000Z');
  });

  test('the MCP tools refuse them as tool errors', async () => {
    const search = await tool('search_messages', {
      query: MARKER,
      created_before: '9999-12-31T23:59:59-23:59',
    });
    expect(search.isError).toBe(true);
    expect(JSON.parse(search.content[0]!.text).error.code).toBe('validation_failed');
    const add = await tool('add_messages', {
      conversation_id: 'times',
      messages: [{ role: 'user', content: MARKER, created_at: '0001-01-01T00:00:00+00:01' }],
    });
    expect(add.isError).toBe(true);
    expect(JSON.parse(add.content[0]!.text).error.code).toBe('validation_failed');
  });
});

describe('ids', () => {
  const id = '01a242aa-a060-75c2-8537-92be35baccfa';
  // Spellings some UUID parsers take: Elysia's format takes urn:uuid:, PostgreSQL braces and
  // missing hyphens. The API takes 8-4-4-4-12 hexadecimal digits in either case, nothing else.
  const refused = [
    `urn:uuid:${id}`,
    `URN:UUID:${id}`,
    `{${id}}`,
    id.replaceAll('-', ''),
    `${id.slice(0, 8)}${id.slice(9)}`,
    ` ${id}`,
    `${id}0`,
    id.replace('0', 'g'),
  ];

  test('refused spellings get 422 on every route with an id', async () => {
    for (const spelling of refused) {
      const path = encodeURIComponent(spelling);
      for (const [method, url, k] of [
        ['GET', `/v1/messages/${path}`, key],
        ['DELETE', `/v1/messages/${path}`, key],
        ['GET', `/v1/admin/tenants/${path}`, 'test-admin-key-0123456789'],
        ['PATCH', `/v1/admin/tenants/${path}`, 'test-admin-key-0123456789'],
        ['GET', `/v1/admin/tenants/${path}/export`, 'test-admin-key-0123456789'],
        ['DELETE', `/v1/admin/tenants/${path}`, 'test-admin-key-0123456789'],
        ['POST', `/v1/admin/tenants/${path}/keys`, 'test-admin-key-0123456789'],
      ] as const) {
        const res = await t.call(method, url, {
          key: k,
          ...(method === 'PATCH' ? { body: { name: 'x' } } : {}),
        });
        expect({ spelling, url, status: res.status, code: res.json?.error?.code }).toEqual({
          spelling,
          url,
          status: 422,
          code: 'validation_failed',
        });
      }
      const got = await tool('get_message', { id: spelling });
      expect(JSON.parse(got.content[0]!.text).error.code).toBe('validation_failed');
    }
  });

  test('an id in capitals names the same message', async () => {
    const created = await t.call('POST', '/v1/messages', {
      key,
      body: { conversation_id: 'ids', role: 'user', content: 'x' },
    });
    const upper = await t.call('GET', `/v1/messages/${created.json.id.toUpperCase()}`, { key });
    expect(upper.status).toBe(200);
    expect(upper.json.id).toBe(created.json.id);
  });
});

describe('the database error mapping', () => {
  /** The error drizzle throws for a statement, from the test database itself. */
  async function failure(statement: ReturnType<typeof sql>): Promise<unknown> {
    try {
      await t.db.execute(statement);
    } catch (err) {
      return err;
    }
    throw new Error('the statement did not fail');
  }

  test('data exceptions become 422, program limits 413, with no value echoed', async () => {
    const cases: [ReturnType<typeof sql>, number, string][] = [
      // What a time past year 9999 became: JavaScript writes it with a sign.
      [sql`select ${`+010000-01-01T23:58:59.000Z`}::timestamptz`, 422, '22009'],
      [sql`select ${`${MARKER} 2024`}::timestamptz`, 422, '22007'],
      [sql`select ${'10000-01-01T00:00:00Z'}::timestamptz + interval '300000 years'`, 422, '22008'],
      [sql`select ${MARKER}::uuid`, 422, '22P02'],
      [sql`select ${'99999'}::int2`, 422, '22003'],
      [sql`select ${`${MARKER}\u0000`}::text`, 422, '22021'],
      [
        sql`select to_tsvector('simple', string_agg(chr(19968 + g) || ${MARKER} || g, ' '))
            from generate_series(1, 60000) g`,
        413,
        '54000',
      ],
    ];
    for (const [statement, status, sqlstate] of cases) {
      const err = await failure(statement);
      const code = (err as { cause?: { code?: string } }).cause?.code;
      expect(code).toBe(sqlstate);
      const mapped = mapDatabaseError(err);
      expect({ sqlstate, status: mapped?.status }).toEqual({ sqlstate, status });
      expect(mapped!.message).not.toContain(MARKER);
      expect(JSON.stringify(mapped!.details ?? null)).not.toContain(MARKER);
    }
  });

  test('a value that passes validation and the database refuses is a 4xx, logged without it', async () => {
    // A real refusal of the database: triggers that raise data exceptions and a program limit,
    // quoting the content in their messages as PostgreSQL's own messages quote values.
    await t.db.execute(
      sql.raw(`create or replace function test_refuse_value() returns trigger language plpgsql as $$
        begin
          if new.content like 'refuse22-%' then
            raise exception 'bad value %', new.content using errcode = '22023';
          elsif new.content like 'refuse23-%' then
            raise exception 'bad value %', new.content using errcode = '23514';
          elsif new.content like 'refuse54-%' then
            raise exception 'too big %', new.content using errcode = '54000';
          end if;
          return new;
        end $$`),
    );
    await t.db.execute(sql.raw(`drop trigger if exists test_refuse_value on messages`));
    await t.db.execute(
      sql.raw(`create trigger test_refuse_value before insert on messages
        for each row execute function test_refuse_value()`),
    );
    try {
      for (const [prefix, status, code] of [
        ['refuse22', 422, 'validation_failed'],
        ['refuse23', 422, 'validation_failed'],
        ['refuse54', 413, 'payload_too_large'],
      ] as const) {
        const body = {
          conversation_id: 'refused',
          role: 'user',
          content: `${prefix}-${MARKER}`,
          metadata: { note: MARKER },
        };
        const one = await t.call('POST', '/v1/messages', { key, body });
        expectRefused(one, status, code);
        const batch = await t.call('POST', '/v1/messages/batch', {
          key,
          body: { messages: [{ ...body, content: 'fine' }, body] },
        });
        expectRefused(batch, status, code);
        for (const res of [one, batch]) {
          const lines = await logsOf(res.json.error.request_id);
          // The request line and a warning that validation let the value through.
          const warning = lines.find((l) => l.includes('the database refused a value'));
          expect(warning).toBeString();
          expect(JSON.parse(warning!).err).toMatchObject({ statement: 'insert messages' });
          for (const line of lines) expect(line).not.toContain(MARKER);
        }
      }
    } finally {
      await t.db.execute(sql.raw(`drop trigger if exists test_refuse_value on messages`));
    }
  });
});

let bigContent: Awaited<ReturnType<typeof buildTestApp>> | undefined;

describe('content at the size limit', () => {
  test('a million characters of distinct words in a multibyte script are stored and searchable', async () => {
    // Such content makes a tsvector of about 4.5 MB (two CJK characters and a space: 14 bytes),
    // more than PostgreSQL's 1 MB: only the first FULLTEXT_INDEXED_CHARS characters are indexed.
    bigContent = await buildTestApp({ MAX_CONTENT_CHARS: '1000000' });
    const { api_key } = await bigContent.tenant('big content');
    const words: string[] = [];
    for (let i = 0; words.length < 340_000; i++) {
      words.push(String.fromCodePoint(0x4e00 + (i % 20_000), 0x4e00 + Math.floor(i / 20_000)));
    }
    const content = words.join(' ').slice(0, 1_000_000);
    expect(content.length).toBe(1_000_000);
    const res = await bigContent.call('POST', '/v1/messages', {
      key: api_key,
      body: { conversation_id: 'big', role: 'user', content },
    });
    expect(res.status).toBe(201);
    const found = await bigContent.call('POST', '/v1/search', {
      key: api_key,
      body: { query: words[7]!, mode: 'fulltext' },
    });
    expect(found.status).toBe(200);
    expect(found.json.results).toHaveLength(1);
  }, 60_000);
});
