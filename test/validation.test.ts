import { describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { rowsOf } from '../src/db/raw';
import { sharedApp } from './support/app';

const t = await sharedApp();
const { api_key: key, id: tenantId } = await t.tenant('validation');

async function stored(): Promise<number> {
  const rows = rowsOf<{ n: number }>(
    await t.db.execute(sql`select count(*)::int as n from messages where tenant_id = ${tenantId}`),
  );
  return rows[0]!.n;
}

const base = { conversation_id: 'v', role: 'user', content: 'x' };

/** Sends a request that must be refused: asserts the status, the one error shape, that nothing
 * was stored, and that the refusal was logged with the request id. */
async function refused(
  status: number,
  code: string,
  init: Parameters<typeof t.call>[2],
  path = '/v1/messages',
) {
  const before = await stored();
  const requestId = `req-${crypto.randomUUID()}`;
  const res = await t.call('POST', path, {
    key,
    ...init,
    headers: { 'x-request-id': requestId, ...init?.headers },
  });
  expect({ status: res.status, code: res.json?.error?.code }).toEqual({ status, code });
  expect(Object.keys(res.json)).toEqual(['error']);
  expect(res.json.error.request_id).toBe(requestId);
  expect(res.json.error.message).toBeString();
  expect(res.headers.get('x-request-id')).toBe(requestId);
  expect(res.headers.get('content-type')).toContain('application/json');
  expect(await stored()).toBe(before);
  await Bun.sleep(5);
  const line = t.logs.lines.find((l) => l.request_id === requestId);
  expect(line).toMatchObject({ status, method: 'POST' });
  return res;
}

const accepted = async (body: unknown, path = '/v1/messages') => {
  const res = await t.call('POST', path, { key, body });
  expect(res.status).toBe(201);
  return res;
};

describe('malformed bodies', () => {
  test('broken, truncated and non-UTF-8 JSON get 400 malformed_json', async () => {
    const json = { 'content-type': 'application/json' };
    for (const raw of ['{', '{"conversation_id": "v",', '{"a":1}}', 'nul', "{'a':1}", '']) {
      await refused(400, 'malformed_json', { raw, headers: json });
    }
    await refused(400, 'malformed_json', {
      raw: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]),
      headers: json,
    });
  });

  test('a body that is not application/json gets 415', async () => {
    await refused(415, 'unsupported_media_type', {
      raw: 'conversation_id=v&role=user&content=x',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    // A cross-site form post uses text/plain: refused, even when it holds valid JSON.
    await refused(415, 'unsupported_media_type', {
      raw: JSON.stringify(base),
      headers: { 'content-type': 'text/plain' },
    });
    await refused(415, 'unsupported_media_type', {
      raw: JSON.stringify(base),
      headers: { 'content-type': 'multipart/form-data; boundary=x' },
    });
    // JSON is UTF-8; a body declared in another charset would be misread.
    await refused(415, 'unsupported_media_type', {
      raw: JSON.stringify(base),
      headers: { 'content-type': 'application/json; charset=utf-16' },
    });
  });

  test('the media type is matched in any letter case, with or without charset=utf-8', async () => {
    for (const type of [
      'Application/JSON',
      'application/json; charset=UTF-8',
      'application/json;charset="utf-8"',
    ]) {
      const res = await t.call('POST', '/v1/messages', {
        key,
        raw: JSON.stringify(base),
        headers: { 'content-type': type },
      });
      expect({ type, status: res.status }).toEqual({ type, status: 201 });
    }
  });

  test('a leap day is a real date', async () => {
    const res = await accepted({ ...base, created_at: '2024-02-29T12:00:00Z' });
    expect(res.json.created_at).toBe('2024-02-29T12:00:00.000Z');
  });

  test('bodies over MAX_BODY_BYTES get 413 in the error shape, with or without Content-Length', async () => {
    const big = JSON.stringify({ ...base, content: 'x'.repeat(5 * 1024 * 1024) });
    await refused(413, 'payload_too_large', {
      raw: big,
      headers: { 'content-type': 'application/json' },
    });
    // Chunked: no Content-Length, so the cap must hold while reading.
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        const chunk = new TextEncoder().encode('x'.repeat(1024 * 1024));
        for (let i = 0; i < 6; i++) controller.enqueue(chunk);
        controller.close();
      },
    });
    await refused(413, 'payload_too_large', {
      raw: stream,
      headers: { 'content-type': 'application/json' },
    });
  });

  test('a full batch of maximum-size messages fits under the default body limit', async () => {
    const messages = Array.from({ length: 100 }, () => ({ ...base, content: 'y'.repeat(32_000) }));
    expect(JSON.stringify({ messages }).length).toBeLessThan(t.config.MAX_BODY_BYTES);
    await accepted({ messages }, '/v1/messages/batch');
  });
});

describe('wrong types are rejected, never coerced', () => {
  const cases: [string, Record<string, unknown>][] = [
    ['metadata as a string', { ...base, metadata: 's' }],
    ['metadata as null', { ...base, metadata: null }],
    ['metadata as an array', { ...base, metadata: [1] }],
    ['content as a number', { ...base, content: 123 }],
    ['content as null', { ...base, content: null }],
    ['conversation_id as a number', { ...base, conversation_id: 5 }],
    ['an unknown role', { ...base, role: 'admin' }],
    ['role in another case', { ...base, role: 'User' }],
    ['tool_calls as an object', { ...base, tool_calls: { id: 1 } }],
    ['tool_calls as an empty array', { ...base, tool_calls: [] }],
    ['created_at as a number', { ...base, created_at: 1700000000 }],
    // Year 0 and earlier: JavaScript writes them in forms PostgreSQL rejects (was a 500).
    ['created_at in year 0', { ...base, created_at: '0000-01-01T00:00:00Z' }],
    [
      'created_at before year 1 by its offset',
      { ...base, created_at: '0001-01-01T00:00:00+01:00' },
    ],
    ['created_at with a signed year', { ...base, created_at: '-000001-01-01T00:00:00Z' }],
    // Not RFC 3339: Date reads it in the server's local time zone.
    ['created_at in another notation', { ...base, created_at: '2024/01/02' }],
    // Not a calendar time: Date would roll these over to another day without a word.
    ['created_at on 30 February', { ...base, created_at: '2024-02-30T00:00:00Z' }],
    ['created_at on 29 February of a common year', { ...base, created_at: '2023-02-29T12:00:00Z' }],
    ['created_at at hour 24', { ...base, created_at: '2024-01-01T24:00:00Z' }],
    ['created_at in month 13', { ...base, created_at: '2024-13-01T00:00:00Z' }],
    ['a missing role', { conversation_id: 'v', content: 'x' }],
    ['a missing conversation_id', { role: 'user', content: 'x' }],
    ['an unknown field', { ...base, tenant_id: '00000000-0000-0000-0000-000000000000' }],
  ];
  for (const [name, body] of cases) {
    test(`422 for ${name}`, async () => {
      const res = await refused(422, 'validation_failed', { body });
      expect(res.json.error.details).toBeArray();
    });
  }

  test('a batch with a non-array messages field, or extra fields, is refused', async () => {
    await refused(422, 'validation_failed', { body: { messages: base } }, '/v1/messages/batch');
    await refused(
      422,
      'validation_failed',
      { body: { messages: [base], x: 1 } },
      '/v1/messages/batch',
    );
    await refused(422, 'validation_failed', { body: [base] }, '/v1/messages/batch');
  });
});

describe('hostile strings', () => {
  test('NUL characters are refused wherever they appear, with where', async () => {
    const cases: [unknown, string][] = [
      [{ ...base, content: 'a\u0000b' }, '/content'],
      [{ ...base, metadata: { 'k\u0000': 1 } }, '/metadata/k\u0000'],
      [{ ...base, metadata: { k: ['ok', '\u0000'] } }, '/metadata/k/1'],
    ];
    for (const [body, path] of cases) {
      const res = await refused(422, 'validation_failed', { body });
      expect(res.json.error.details).toEqual({ path });
    }
  });

  test('lone surrogates are refused', async () => {
    await refused(422, 'validation_failed', {
      raw: '{"conversation_id":"v","role":"user","content":"\\ud800x"}',
      headers: { 'content-type': 'application/json' },
    });
  });

  test('emoji, right-to-left text and SQL- or script-looking strings are stored verbatim', async () => {
    for (const content of [
      '👩‍💻 emoji 🎉',
      'مرحبا بالعالم \u202Eevil',
      "'; drop table messages; --",
      '<script>alert(1)</script>',
      '\\u0000 (escaped, harmless)',
    ]) {
      const res = await accepted({ ...base, content, metadata: { note: content } });
      const got = await t.call('GET', `/v1/messages/${res.json.id}`, { key });
      expect(got.json.content).toBe(content);
      expect(got.json.metadata.note).toBe(content);
    }
  });

  test('absurdly deep JSON is refused without a crash', async () => {
    const deep = `${'['.repeat(50_000)}${']'.repeat(50_000)}`;
    const res = await t.call('POST', '/v1/messages', {
      key,
      raw: deep,
      headers: { 'content-type': 'application/json' },
    });
    expect([400, 422]).toContain(res.status);
    expect((await t.call('GET', '/livez')).status).toBe(200);
  });
});

describe('limits hold exactly at the boundary', () => {
  test('conversation_id: 128 allowed characters pass, 129 or others fail', async () => {
    await accepted({ ...base, conversation_id: 'a'.repeat(128) });
    await accepted({ ...base, conversation_id: 'A-z_0.9:x' });
    await refused(422, 'validation_failed', {
      body: { ...base, conversation_id: 'a'.repeat(129) },
    });
    await refused(422, 'validation_failed', { body: { ...base, conversation_id: '' } });
    for (const bad of ['a b', 'a/b', 'é', 'a\nb', "a'b"]) {
      await refused(422, 'validation_failed', { body: { ...base, conversation_id: bad } });
    }
  });

  test('content: exactly MAX_CONTENT_CHARS passes, one more fails', async () => {
    const max = t.config.MAX_CONTENT_CHARS;
    await accepted({ ...base, content: 'c'.repeat(max) });
    await refused(422, 'validation_failed', { body: { ...base, content: 'c'.repeat(max + 1) } });
  });

  test('metadata: exactly 16 KiB serialised passes, one byte more fails', async () => {
    const limit = 16 * 1024;
    const fill = (n: number) => ({ p: 'm'.repeat(n - JSON.stringify({ p: '' }).length) });
    expect(Buffer.byteLength(JSON.stringify(fill(limit)))).toBe(limit);
    await accepted({ ...base, metadata: fill(limit) });
    await refused(422, 'validation_failed', { body: { ...base, metadata: fill(limit + 1) } });
  });

  test('metadata: depth 5 passes, depth 6 fails', async () => {
    const nest = (depth: number): Record<string, unknown> =>
      depth === 1 ? { leaf: 1 } : { n: nest(depth - 1) };
    await accepted({ ...base, metadata: nest(5) });
    await refused(422, 'validation_failed', { body: { ...base, metadata: nest(6) } });
  });

  test('tool_calls: exactly 64 KiB passes, one byte more fails', async () => {
    const limit = 64 * 1024;
    const fill = (n: number) => [{ a: 't'.repeat(n - JSON.stringify([{ a: '' }]).length) }];
    expect(Buffer.byteLength(JSON.stringify(fill(limit)))).toBe(limit);
    await accepted({ ...base, tool_calls: fill(limit) });
    await refused(422, 'validation_failed', { body: { ...base, tool_calls: fill(limit + 1) } });
  });
});

describe('ids and query strings', () => {
  test('ids that are not UUIDs get 422, unknown UUIDs 404', async () => {
    for (const id of ['abc', '1', "1' or '1'='1", '00000000-0000-0000-0000-00000000000g']) {
      const res = await t.call('GET', `/v1/messages/${encodeURIComponent(id)}`, { key });
      expect(res.status).toBe(422);
      expect(res.json.error.code).toBe('validation_failed');
    }
    const res = await t.call('GET', `/v1/messages/${crypto.randomUUID()}`, { key });
    expect(res.status).toBe(404);
  });

  test('unknown or malformed query parameters get 422', async () => {
    // Numbers in a query are plain decimal digits: no sign, exponent, base prefix or spaces.
    const malformed = [
      'foo=1',
      'limit=abc',
      'limit=1.5',
      'limit=0x10',
      'limit=1e1',
      'limit=+5',
      'limit=%205',
      'limit=0b11',
      'limit=',
      'order=sideways',
      'include_archived=yes',
    ];
    const answers: Record<string, string> = {};
    for (const q of malformed) {
      const res = await t.call('GET', `/v1/messages?${q}`, { key });
      answers[q] = `${res.status} ${res.json?.error?.code}`;
    }
    expect(answers).toEqual(Object.fromEntries(malformed.map((q) => [q, '422 validation_failed'])));
    const conversations = await t.call('GET', '/v1/conversations?limit=0x10', { key });
    expect(conversations.status).toBe(422);
  });
});
