import { describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { join } from 'node:path';
import { rowsOf } from '../src/db/raw';
import { runCommand } from '../harness/process';
import { ADMIN_KEY, buildTestApp, sharedApp, type TestApp } from './support/app';

const t = await sharedApp();
const admin = { key: ADMIN_KEY };
const ROOT = join(import.meta.dir, '..');

type Line = Record<string, any> & { type: string };

/** Every line must be JSON: a line that is not fails the test here. */
function parseNdjson(text: string): Line[] {
  expect(text.endsWith('\n')).toBe(true);
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) => JSON.parse(line) as Line);
}

/** A tenant with messages in three conversations, written through the API. */
async function seeded(on: TestApp = t) {
  const tenant = await on.tenant('exported');
  const messages = ['a', 'b', 'c'].flatMap((c, i) =>
    Array.from({ length: i + 2 }, (_, j) => ({
      conversation_id: `conv-${c}`,
      role: j % 2 ? 'assistant' : 'user',
      content: `message ${j} of ${c}`,
      metadata: { n: j },
      ...(c === 'b' && j === 0 ? { tool_calls: [{ id: 'call_1', name: 'lookup' }] } : {}),
    })),
  );
  const res = await on.call('POST', '/v1/messages/batch', {
    key: tenant.api_key,
    body: { messages },
    headers: { 'idempotency-key': `seed-${tenant.id}` },
  });
  expect(res.status).toBe(201);
  return { tenant, count: messages.length };
}

/** `count` messages in `conversations` conversations, inserted by SQL (fast, spread over time). */
async function bulk(tenantId: string, count: number, conversations = 3) {
  await t.db.execute(sql`
    insert into conversations (tenant_id, id)
    select ${tenantId}::uuid, 'bulk-' || c from generate_series(1, ${conversations}) c`);
  await t.db.execute(sql`
    insert into messages (id, tenant_id, conversation_id, role, content, created_at)
    select gen_random_uuid(), ${tenantId}::uuid, 'bulk-' || (1 + i % ${conversations}), 'user',
           'bulk ' || i, now() - make_interval(secs => i)
    from generate_series(1, ${count}) i`);
}

async function countOwned(tenantId: string) {
  const [row] = rowsOf<Record<string, number>>(
    await t.db.execute(sql`select
      (select count(*)::int from messages where tenant_id = ${tenantId}) as messages,
      (select count(*)::int from message_search where tenant_id = ${tenantId}) as message_search,
      (select count(*)::int from conversations where tenant_id = ${tenantId}) as conversations,
      (select count(*)::int from idempotency_keys where tenant_id = ${tenantId}) as idempotency_keys,
      (select count(*)::int from api_keys where tenant_id = ${tenantId}) as api_keys,
      (select count(*)::int from tenants where id = ${tenantId}) as tenants`),
  );
  return row!;
}

describe('GET /v1/admin/tenants/:id/export', () => {
  test("streams the tenant, its conversations and its messages as NDJSON, and no one else's", async () => {
    const { tenant, count } = await seeded();
    const other = await seeded();
    const res = await t.call('GET', `/v1/admin/tenants/${tenant.id}/export`, admin);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/x-ndjson');
    expect(res.headers.get('x-request-id')).toBeTruthy();
    const lines = parseNdjson(res.text);

    expect(lines[0]).toMatchObject({ type: 'tenant', id: tenant.id, name: 'exported' });
    expect(lines[0]).not.toHaveProperty('api_key_prefix');
    const convs = lines.filter((l) => l.type === 'conversation');
    const msgs = lines.filter((l) => l.type === 'message');
    expect(convs.map((c) => c.id)).toEqual(['conv-a', 'conv-b', 'conv-c']);
    expect(msgs.length).toBe(count);
    expect(lines.at(-1)).toEqual({ type: 'end', conversations: 3, messages: count });
    // Order of the sections: tenant, conversations, messages, end.
    expect(lines.map((l) => l.type)).toEqual([
      'tenant',
      ...convs.map(() => 'conversation'),
      ...msgs.map(() => 'message'),
      'end',
    ]);
    // Messages as the API shows them.
    const listed = await t.call('GET', '/v1/messages?limit=100', { key: tenant.api_key });
    const byId = new Map(msgs.map(({ type: _, ...m }) => [m.id, m]));
    for (const m of listed.json.messages) expect(byId.get(m.id)).toEqual(m);

    const keyHash = new Bun.CryptoHasher('sha256').update(tenant.api_key).digest('hex');
    for (const secret of [tenant.api_key, tenant.api_key.slice(0, 12), keyHash, ADMIN_KEY]) {
      expect(res.text).not.toContain(secret);
    }
    expect(res.text).not.toContain(other.tenant.id);
  });

  test('an unknown tenant is 404 before any streaming; a malformed id 422', async () => {
    const res = await t.call('GET', `/v1/admin/tenants/${crypto.randomUUID()}/export`, admin);
    expect(res.status).toBe(404);
    expect(res.json.error.code).toBe('not_found');
    expect(res.headers.get('content-type')).toContain('application/json');
    const bad = await t.call('GET', '/v1/admin/tenants/nope/export', admin);
    expect(bad.status).toBe(422);
  });

  test('needs the admin key: none or a tenant key get 401', async () => {
    const { tenant } = await seeded();
    for (const key of [null, tenant.api_key]) {
      const res = await t.call('GET', `/v1/admin/tenants/${tenant.id}/export`, { key });
      expect(res.status).toBe(401);
    }
  });

  test('is read lazily, chunk by chunk, and a slow reader is not cut by REQUEST_TIMEOUT_MS', async () => {
    const slow = await buildTestApp({ REQUEST_TIMEOUT_MS: '300' });
    try {
      const tenant = await slow.tenant('large');
      await bulk(tenant.id, 3000);
      const res = await slow.handler(
        new Request(`http://localhost/v1/admin/tenants/${tenant.id}/export`, {
          headers: { authorization: `Bearer ${ADMIN_KEY}` },
        }),
        null,
      );
      expect(res.status).toBe(200);
      expect(res.body).toBeInstanceOf(ReadableStream);
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      const first = await reader.read();
      expect(JSON.parse(decoder.decode(first.value).split('\n')[0]!).type).toBe('tenant');

      // Written after the response began: only an export that reads as it goes can show it.
      await slow.db.execute(sql`
        insert into messages (id, tenant_id, conversation_id, role, content, created_at)
        values (gen_random_uuid(), ${tenant.id}, 'bulk-1', 'user', 'late', now() + interval '1 hour')`);
      // Well past the request timeout before reading on.
      await Bun.sleep(600);

      let text = decoder.decode(first.value, { stream: true });
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
      const lines = parseNdjson(text);
      const msgs = lines.filter((l) => l.type === 'message');
      expect(lines.at(-1)).toEqual({ type: 'end', conversations: 3, messages: 3001 });
      expect(new Set(msgs.map((m) => m.id)).size).toBe(3001);
      expect(msgs.at(-1)!.content).toBe('late');
      const times = msgs.map((m) => m.created_at as string);
      expect(times).toEqual([...times].sort());
      expect(slow.logs.lines.some((l) => l.msg === 'request timed out')).toBe(false);
    } finally {
      await slow.close();
    }
  });
});

describe('DELETE /v1/admin/tenants/:id', () => {
  test('revokes the keys at once, removes every row the tenant owns, and nothing else', async () => {
    const { tenant, count } = await seeded();
    const other = await seeded();
    // More messages than one delete batch.
    await bulk(tenant.id, 5100);
    const ping = (key: string) => t.call('GET', '/v1/messages?limit=1', { key });
    expect((await ping(tenant.api_key)).status).toBe(200);
    const before = await countOwned(other.tenant.id);

    const res = await t.call('DELETE', `/v1/admin/tenants/${tenant.id}`, admin);
    expect(res.status).toBe(200);
    expect(res.json).toEqual({
      deleted: { messages: count + 5100, conversations: 6, idempotency_keys: 1, api_keys: 1 },
    });
    expect((await ping(tenant.api_key)).status).toBe(401);
    expect(await countOwned(tenant.id)).toEqual({
      messages: 0,
      message_search: 0,
      conversations: 0,
      idempotency_keys: 0,
      api_keys: 0,
      tenants: 0,
    });
    expect(await countOwned(other.tenant.id)).toEqual(before);
    expect((await ping(other.tenant.api_key)).status).toBe(200);

    expect((await t.call('DELETE', `/v1/admin/tenants/${tenant.id}`, admin)).status).toBe(404);
    expect((await t.call('GET', `/v1/admin/tenants/${tenant.id}`, admin)).status).toBe(404);
    expect((await t.call('GET', `/v1/admin/tenants/${tenant.id}/export`, admin)).status).toBe(404);
  });

  test('a cached key stops working at once, not after AUTH_CACHE_TTL_MS', async () => {
    const cached = await buildTestApp({ AUTH_CACHE_TTL_MS: '600000' });
    try {
      const tenant = await cached.tenant();
      const ping = () => cached.call('GET', '/v1/messages?limit=1', { key: tenant.api_key });
      expect((await ping()).status).toBe(200);
      expect((await cached.call('DELETE', `/v1/admin/tenants/${tenant.id}`, admin)).status).toBe(
        200,
      );
      expect((await ping()).status).toBe(401);
    } finally {
      await cached.close();
    }
  });

  test('a repeat finishes a deletion that was interrupted after the keys were revoked', async () => {
    const { tenant, count } = await seeded();
    // Where an interrupted run stops: tenant disabled, keys gone, data still there.
    await t.db.execute(sql`update tenants set disabled = true where id = ${tenant.id}`);
    await t.db.execute(sql`delete from api_keys where tenant_id = ${tenant.id}`);
    const res = await t.call('DELETE', `/v1/admin/tenants/${tenant.id}`, admin);
    expect(res.status).toBe(200);
    expect(res.json.deleted).toMatchObject({ messages: count, conversations: 3, api_keys: 0 });
    expect((await countOwned(tenant.id)).tenants).toBe(0);
  });

  test('unknown tenant 404, malformed id 422, admin key required', async () => {
    const res = await t.call('DELETE', `/v1/admin/tenants/${crypto.randomUUID()}`, admin);
    expect(res.status).toBe(404);
    expect(res.json.error.code).toBe('not_found');
    expect((await t.call('DELETE', '/v1/admin/tenants/nope', admin)).status).toBe(422);
    const tenant = await t.tenant();
    for (const key of [null, tenant.api_key]) {
      expect((await t.call('DELETE', `/v1/admin/tenants/${tenant.id}`, { key })).status).toBe(401);
    }
    expect((await countOwned(tenant.id)).tenants).toBe(1);
  });
});

describe('threadstore export --tenant', () => {
  async function cli(args: string[]) {
    return runCommand([process.execPath, join(ROOT, 'src', 'index.ts'), ...args], {
      cwd: ROOT,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        DATABASE_URL: process.env.TEST_DATABASE_URL!,
        ADMIN_API_KEY: ADMIN_KEY,
      },
    });
  }

  test('writes the same NDJSON as the route to stdout and exits 0', async () => {
    const { tenant, count } = await seeded();
    const run = await cli(['export', '--tenant', tenant.id]);
    expect(run.code).toBe(0);
    const http = await t.call('GET', `/v1/admin/tenants/${tenant.id}/export`, admin);
    expect(run.stdout).toBe(http.text);
    expect(parseNdjson(run.stdout).at(-1)).toEqual({
      type: 'end',
      conversations: 3,
      messages: count,
    });
  });

  test('an unknown tenant: message on stderr, nothing on stdout, exit 1', async () => {
    const id = crypto.randomUUID();
    const run = await cli(['export', `--tenant=${id}`]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(`tenant ${id} not found`);
  });

  test('bad arguments: usage on stderr, exit 2', async () => {
    for (const args of [
      ['export'],
      ['export', '--tenant'],
      ['export', '--tenant', 'x'],
      ['export', '--tenant', crypto.randomUUID(), 'extra'],
    ]) {
      const run = await cli(args);
      expect(run.code).toBe(2);
      expect(run.stderr).toContain('Usage:');
    }
  });
});
