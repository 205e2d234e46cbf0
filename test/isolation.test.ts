import { describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { rowsOf } from '../src/db/raw';
import { ADMIN_KEY, expectUnauthorized, sharedApp } from './support/app';

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

// ---------------------------------------------------------------------------------------------
// Table-driven: every tenant route, as tenant A, aimed at tenant B's data; then every tenant
// route with every kind of bad key; then tenant keys on every admin route.

const hex = () => crypto.randomUUID().replaceAll('-', '');

/** Tenant B: messages with words, metadata and a conversation id found nowhere else. */
async function victim() {
  const b = await t.tenant('B');
  const words = [`bword${hex()}`, `bword${hex()}`];
  const metaSecret = `bmeta${hex()}`;
  const conversation = `b-only-${hex().slice(0, 12)}`;
  const created = await t.call('POST', '/v1/messages/batch', {
    key: b.api_key,
    body: {
      messages: [conversation, conversation, 'shared-b', 'shared-b'].map((c, i) => ({
        conversation_id: c,
        role: 'user',
        content: `${words[i % 2]} and more`,
        metadata: { secret: metaSecret },
      })),
    },
  });
  expect(created.status).toBe(201);
  const ids: string[] = created.json.messages.map((m: { id: string }) => m.id);
  const cursor = async (path: string) => {
    const res = await t.call('GET', path, { key: b.api_key });
    expect(res.json.next_cursor).toBeString();
    return encodeURIComponent(res.json.next_cursor);
  };
  return {
    ...b,
    ids,
    words,
    conversation,
    /** Strings that must never reach anyone but B. */
    secrets: [...words, metaSecret, ...ids],
    cursors: {
      messages: await cursor('/v1/messages?limit=1'),
      messagesOfConversation: await cursor(`/v1/messages?limit=1&conversation_id=${conversation}`),
      messagesDesc: await cursor('/v1/messages?limit=1&order=desc'),
      conversations: await cursor('/v1/conversations?limit=1'),
    },
  };
}
type Victim = Awaited<ReturnType<typeof victim>>;

/** What B owns, as rows: any change by another tenant's request shows here. */
async function ownedBy(tenantId: string) {
  return rowsOf(
    await t.db.execute(sql`
      select m.id, m.conversation_id, m.content, m.metadata, m.archived, m.archived_at
      from messages m where m.tenant_id = ${tenantId} order by m.id`),
  );
}

interface Probe {
  route: string;
  method: string;
  path: (b: Victim) => string;
  body?: (b: Victim) => unknown;
  /** A's answer: the status, and for a 2xx what the body must hold. */
  expected: number;
  empty?: (json: any) => unknown[];
}

const validMessage = (conversation: string) => ({
  conversation_id: conversation,
  role: 'user',
  content: 'from A',
});

/** Every tenant route, aimed at B's ids, conversations, cursors and words. */
const probes: Probe[] = [
  {
    route: 'GET /v1/messages/:id',
    method: 'GET',
    path: (b) => `/v1/messages/${b.ids[0]}`,
    expected: 404,
  },
  {
    route: 'DELETE /v1/messages/:id',
    method: 'DELETE',
    path: (b) => `/v1/messages/${b.ids[1]}`,
    expected: 404,
  },
  {
    route: 'GET /v1/messages (B’s conversation)',
    method: 'GET',
    path: (b) => `/v1/messages?conversation_id=${b.conversation}&include_archived=true`,
    expected: 200,
    empty: (j) => j.messages,
  },
  {
    route: 'GET /v1/messages (B’s cursor)',
    method: 'GET',
    path: (b) => `/v1/messages?limit=1&cursor=${b.cursors.messages}`,
    expected: 400,
  },
  {
    route: 'GET /v1/messages (B’s cursor of a conversation)',
    method: 'GET',
    path: (b) =>
      `/v1/messages?limit=1&conversation_id=${b.conversation}&cursor=${b.cursors.messagesOfConversation}`,
    expected: 400,
  },
  {
    route: 'GET /v1/messages (B’s descending cursor)',
    method: 'GET',
    path: (b) => `/v1/messages?limit=1&order=desc&cursor=${b.cursors.messagesDesc}`,
    expected: 400,
  },
  {
    route: 'GET /v1/conversations (B’s cursor)',
    method: 'GET',
    path: (b) => `/v1/conversations?limit=1&cursor=${b.cursors.conversations}`,
    expected: 400,
  },
  {
    route: 'GET /v1/conversations/:id',
    method: 'GET',
    path: (b) => `/v1/conversations/${b.conversation}?include_archived=true`,
    expected: 404,
  },
  {
    route: 'DELETE /v1/conversations/:id',
    method: 'DELETE',
    path: (b) => `/v1/conversations/${b.conversation}`,
    expected: 404,
  },
  {
    route: 'POST /v1/conversations/:id/archive',
    method: 'POST',
    path: (b) => `/v1/conversations/${b.conversation}/archive`,
    expected: 404,
  },
  {
    route: 'POST /v1/conversations/:id/unarchive',
    method: 'POST',
    path: (b) => `/v1/conversations/${b.conversation}/unarchive`,
    expected: 404,
  },
  ...(['fulltext', 'hybrid'] as const).flatMap((mode) => [
    {
      route: `POST /v1/search (${mode}, B’s word)`,
      method: 'POST',
      path: () => '/v1/search',
      body: (b: Victim) => ({ query: b.words[0], mode, include_archived: true }),
      expected: 200,
      empty: (j: any) => j.results,
    },
    {
      route: `POST /v1/search (${mode}, B’s words in B’s conversation)`,
      method: 'POST',
      path: () => '/v1/search',
      body: (b: Victim) => ({
        query: `${b.words[0]} or ${b.words[1]} or and or more`,
        mode,
        conversation_id: b.conversation,
      }),
      expected: 200,
      empty: (j: any) => j.results,
    },
  ]),
  {
    route: 'POST /v1/messages (into B’s conversation id)',
    method: 'POST',
    path: () => '/v1/messages',
    body: (b) => validMessage(b.conversation),
    expected: 201,
  },
  {
    route: 'POST /v1/messages/batch (into B’s conversation id)',
    method: 'POST',
    path: () => '/v1/messages/batch',
    body: (b) => ({ messages: [validMessage(b.conversation)] }),
    expected: 201,
  },
];

describe('tenant A aimed at tenant B’s ids, conversations, cursors and words', () => {
  test.each(probes.map((p) => [p.route, p] as const))(
    '%s: never a byte of B’s data',
    async (_, probe) => {
      const a = await t.tenant('A');
      await t.call('POST', '/v1/messages', { key: a.api_key, body: validMessage('a-own') });
      const b = await victim();
      const before = await ownedBy(b.id);

      const res = await t.call(probe.method, probe.path(b), {
        key: a.api_key,
        body: probe.body?.(b),
      });
      expect(res.status).toBe(probe.expected);
      for (const secret of b.secrets) expect(res.text).not.toContain(secret);
      if (probe.expected === 400) expect(res.json.error.code).toBe('invalid_cursor');
      if (probe.expected === 404) expect(res.json.error.code).toBe('not_found');
      if (probe.empty) expect(probe.empty(res.json)).toEqual([]);
      if (probe.expected === 201) {
        // A got a conversation of its own under that name; B's is untouched.
        const conv = await t.call('GET', `/v1/conversations/${b.conversation}`, { key: a.api_key });
        expect(conv.json.message_count).toBe(1);
      }

      expect(await ownedBy(b.id)).toEqual(before);
      const bConv = await t.call('GET', `/v1/conversations/${b.conversation}`, { key: b.api_key });
      expect(bConv.json.message_count).toBe(2);
    },
  );

  test('A’s unfiltered listings and searches never include B', async () => {
    const a = await t.tenant('A');
    const b = await victim();
    // A's message shares words with B's ("and more"): A finds its own message, and only that.
    const own = await t.call('POST', '/v1/messages', {
      key: a.api_key,
      body: { ...validMessage('a-own'), content: 'and more from A' },
    });
    for (const [method, path, body] of [
      ['GET', '/v1/messages?limit=200&include_archived=true', undefined],
      ['GET', '/v1/messages?limit=200&order=desc', undefined],
      ['GET', '/v1/conversations?limit=200&include_archived=true', undefined],
      ['POST', '/v1/search', { query: 'and more', mode: 'fulltext', include_archived: true }],
      ['POST', '/v1/search', { query: 'from A', metadata: {} }],
    ] as const) {
      const res = await t.call(method, path, { key: a.api_key, body });
      expect(res.status).toBe(200);
      for (const secret of [...b.secrets, b.conversation]) expect(res.text).not.toContain(secret);
    }
    for (const query of ['and more', 'more']) {
      const search = await t.call('POST', '/v1/search', {
        key: a.api_key,
        body: { query, mode: 'fulltext', include_archived: true },
      });
      expect(search.json.results.map((r: any) => r.message.id)).toEqual([own.json.id]);
    }
  });
});

// ---------------------------------------------------------------------------------------------

/**
 * Every tenant route with a valid request, so only the key can be what refuses it. Rows all
 * have three entries: bun's test.each takes a missing last argument for a done callback.
 */
const tenantRoutes: [string, string, unknown][] = [
  ['POST', '/v1/messages', validMessage('auth')],
  ['POST', '/v1/messages/batch', { messages: [validMessage('auth')] }],
  ['GET', '/v1/messages', undefined],
  ['GET', `/v1/messages/${crypto.randomUUID()}`, undefined],
  ['DELETE', `/v1/messages/${crypto.randomUUID()}`, undefined],
  ['GET', '/v1/conversations', undefined],
  ['GET', '/v1/conversations/auth', undefined],
  ['DELETE', '/v1/conversations/auth', undefined],
  ['POST', '/v1/conversations/auth/archive', undefined],
  ['POST', '/v1/conversations/auth/unarchive', undefined],
  ['POST', '/v1/search', { query: 'from A' }],
];

/** Every admin route, with a body that would be valid for the admin. */
const adminRoutes = (tenantId: string): [string, string, unknown?][] => [
  ['GET', '/v1/admin/health'],
  ['POST', '/v1/admin/tenants', { name: 'by a tenant' }],
  ['GET', '/v1/admin/tenants'],
  ['GET', `/v1/admin/tenants/${tenantId}`],
  ['PATCH', `/v1/admin/tenants/${tenantId}`, { disabled: true }],
  ['POST', `/v1/admin/tenants/${tenantId}/keys`, { grace_seconds: 0 }],
  ['GET', `/v1/admin/tenants/${tenantId}/export`],
  ['DELETE', `/v1/admin/tenants/${tenantId}`],
  ['POST', '/v1/admin/retention/run'],
  ['POST', '/v1/admin/embeddings/retry', {}],
  ['POST', '/v1/admin/embeddings/reindex'],
];

async function messageCount(tenantId: string): Promise<number> {
  const [row] = rowsOf<{ n: number }>(
    await t.db.execute(sql`select count(*)::int as n from messages where tenant_id = ${tenantId}`),
  );
  return row!.n;
}

/** A tenant whose first key was rotated out with no grace period. */
async function rotatedOut() {
  const tenant = await t.tenant('rotated');
  const rotated = await t.call('POST', `/v1/admin/tenants/${tenant.id}/keys`, {
    key: ADMIN_KEY,
    body: { grace_seconds: 0 },
  });
  expect(rotated.status).toBe(201);
  return { ...tenant, newKey: rotated.json.api_key as string };
}

/** A client address no other request of this file used, so its rate-limit count starts afresh. */
let addresses = 0;
const freshIp = () => {
  addresses++;
  return `10.77.${addresses >> 8}.${addresses & 255}`;
};

const GARBAGE_TOKENS = ['x', 'ts_', 'ts_short', `ts_${'!'.repeat(43)}`, 'k'.repeat(10_000), '%00'];
const UNKNOWN_KEY = `ts_${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url')}`;

describe('keys: every tenant route', () => {
  test.each(tenantRoutes)(
    '%s %s: no key, a malformed, unknown, rotated-out or admin key get 401',
    async (method, path, body) => {
      const r = await rotatedOut();
      const before = await messageCount(r.id);
      const headers: (Record<string, string> | undefined)[] = [
        undefined,
        { authorization: '' },
        { authorization: 'Bearer' },
        { authorization: `Basic ${r.newKey}` },
        { authorization: r.newKey },
        { authorization: `Bearer ${r.newKey}, Bearer ${r.newKey}` },
        { authorization: `Bearer ${r.newKey} extra` },
        { authorization: `Bearer ${UNKNOWN_KEY}` },
        { authorization: `Bearer ${r.api_key}` },
        { authorization: `Bearer ${ADMIN_KEY}` },
        ...GARBAGE_TOKENS.map((g) => ({ authorization: `Bearer ${g}` })),
      ];
      for (const h of headers) expectUnauthorized(await t.call(method, path, { headers: h, body }));
      expect(await messageCount(r.id)).toBe(before);
      // The new key works on the same request.
      expect((await t.call(method, path, { key: r.newKey, body })).status).toBeLessThan(500);
      expect([401, 403]).not.toContain(
        (await t.call(method, path, { key: r.newKey, body })).status,
      );
    },
  );

  test.each(tenantRoutes)(
    '%s %s: a disabled tenant gets 403 and changes nothing',
    async (method, path, body) => {
      const d = await t.tenant('disabled');
      await t.call('POST', '/v1/messages', { key: d.api_key, body: validMessage('auth') });
      const patched = await t.call('PATCH', `/v1/admin/tenants/${d.id}`, {
        key: ADMIN_KEY,
        body: { disabled: true },
      });
      expect(patched.status).toBe(200);
      const before = await ownedBy(d.id);
      const res = await t.call(method, path, { key: d.api_key, body });
      expect(res.status).toBe(403);
      expect(res.json).toEqual({
        error: {
          code: 'forbidden',
          message: expect.any(String),
          request_id: res.headers.get('x-request-id'),
        },
      });
      expect(await ownedBy(d.id)).toEqual(before);
    },
  );

  test.each(tenantRoutes)(
    '%s %s: an unknown key and a garbage key get the same answer',
    async (method, path, body) => {
      const r = await rotatedOut();
      // Each from an address of its own, so that the rate-limit headers start from the same count.
      let ip = 0;
      const answer = async (token: string) => {
        ip++;
        const res = await t.call(method, path, {
          headers: { authorization: `Bearer ${token}` },
          body,
          ip: freshIp(),
        });
        const headers = [...res.headers].filter(([k]) => !['x-request-id', 'date'].includes(k));
        const { request_id, ...error } = res.json.error;
        expect(request_id).toBe(res.headers.get('x-request-id'));
        return { status: res.status, headers, error };
      };
      const unknown = await answer(UNKNOWN_KEY);
      expect(unknown.status).toBe(401);
      for (const token of [r.api_key, ...GARBAGE_TOKENS])
        expect(await answer(token)).toEqual(unknown);
    },
  );
});

describe('keys: every admin route', () => {
  const shapes = adminRoutes(':id').map(([m, p], i) => [m, p, i] as const);
  test.each(shapes)(
    '%s %s: tenant keys get 401, the same as garbage, and change nothing',
    async (_m, _p, i) => {
      const a = await t.tenant('A');
      const r = await rotatedOut();
      const d = await t.tenant('disabled');
      await t.call('PATCH', `/v1/admin/tenants/${d.id}`, {
        key: ADMIN_KEY,
        body: { disabled: true },
      });
      const [method, path, body] = adminRoutes(a.id)[i]!;
      const tenantBefore = (await t.call('GET', `/v1/admin/tenants/${a.id}`, { key: ADMIN_KEY }))
        .json;
      const tenants = async () =>
        rowsOf<{ n: number }>(await t.db.execute(sql`select count(*)::int as n from tenants`))[0]!
          .n;
      const countBefore = await tenants();

      const answer = async (key: string) => {
        const res = await t.call(method, path, { key, body, ip: freshIp() });
        expectUnauthorized(res);
        const headers = [...res.headers].filter(([k]) => !['x-request-id', 'date'].includes(k));
        const { request_id: _, ...error } = res.json.error;
        return { status: res.status, headers, error };
      };
      const garbage = await answer('not-the-admin-key');
      for (const key of [a.api_key, r.api_key, r.newKey, d.api_key, UNKNOWN_KEY, `${ADMIN_KEY}x`]) {
        expect(await answer(key)).toEqual(garbage);
      }

      expect((await t.call('GET', `/v1/admin/tenants/${a.id}`, { key: ADMIN_KEY })).json).toEqual(
        tenantBefore,
      );
      expect(await tenants()).toBe(countBefore);
      expect((await t.call('GET', '/v1/messages', { key: a.api_key })).status).toBe(200);
    },
  );
});
