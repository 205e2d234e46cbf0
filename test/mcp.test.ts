import { afterAll, describe, expect, test } from 'bun:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Elysia } from 'elysia';
import { mcpModule } from '../src/modules/mcp';
import { errors } from '../src/plugins/errors';
import { jsonBody } from '../src/plugins/json-body';
import { requestId } from '../src/plugins/request-id';
import { buildTestApp, sharedApp, type TestApp } from './support/app';

const shared = await sharedApp();
const apps: TestApp[] = [];

afterAll(async () => {
  for (const app of apps) await app.close();
});

/** An SDK client talking to the app in process, through the same entry point as the server. */
async function connect(
  t: TestApp,
  key: string | null,
  headers: Record<string, string> = {},
): Promise<Client> {
  const transport = new StreamableHTTPClientTransport(new URL('http://localhost/mcp'), {
    requestInit: { headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers } },
    fetch: (input, init) =>
      t.handler(new Request(String(input), init), {
        requestIP: () => ({ address: '127.0.0.1', family: 'IPv4', port: 40000 }),
      }),
  });
  const client = new Client({ name: 'threadstore-test', version: '1.0.0' });
  await client.connect(transport);
  return client;
}

/** The API error a tool error carries in its text. */
function errorOf(result: Awaited<ReturnType<Client['callTool']>>) {
  expect(result.isError).toBe(true);
  const [content] = result.content as { type: string; text: string }[];
  return JSON.parse(content!.text).error as { code: string; details?: any; request_id: string };
}

describe('MCP tools', () => {
  test('lists the six tools with JSON Schemas from the API’s own schemas', async () => {
    const { api_key } = await shared.tenant();
    const client = await connect(shared, api_key);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual([
      'add_messages',
      'delete_message',
      'get_message',
      'list_conversations',
      'list_messages',
      'search_messages',
    ]);
    const add = tools.find((t) => t.name === 'add_messages')!;
    expect(add.inputSchema.required).toEqual(['conversation_id', 'messages']);
    const messages = (add.inputSchema.properties as any).messages;
    expect(messages.maxItems).toBe(100);
    expect(messages.items.properties.role.anyOf.map((r: any) => r.const)).toEqual([
      'user',
      'assistant',
      'system',
      'tool',
    ]);
    // The per-message conversation id is the tool's own argument, not repeated per message.
    expect(messages.items.properties.conversation_id).toBeUndefined();
    expect(add.outputSchema?.type).toBe('object');
    for (const t of tools) expect(t.description!.length).toBeGreaterThan(40);
    await client.close();
  });

  test('store, list, get, search and delete through the tools', async () => {
    const { api_key } = await shared.tenant();
    const client = await connect(shared, api_key);
    const added = await client.callTool({
      name: 'add_messages',
      arguments: {
        conversation_id: 'chat-1',
        messages: [
          { role: 'user', content: 'My favourite colour is ultramarine' },
          { role: 'assistant', content: 'Noted: ultramarine', metadata: { source: 'agent' } },
        ],
      },
    });
    expect(added.isError).toBeFalsy();
    const stored = (added.structuredContent as any).messages;
    expect(stored.map((m: any) => m.content)).toEqual([
      'My favourite colour is ultramarine',
      'Noted: ultramarine',
    ]);
    expect(stored.every((m: any) => m.conversation_id === 'chat-1')).toBe(true);

    const page = await client.callTool({
      name: 'list_messages',
      arguments: { conversation_id: 'chat-1', limit: 1 },
    });
    const first = page.structuredContent as any;
    expect(first.messages.map((m: any) => m.id)).toEqual([stored[0].id]);
    const next = await client.callTool({
      name: 'list_messages',
      arguments: { conversation_id: 'chat-1', limit: 1, cursor: first.next_cursor },
    });
    expect((next.structuredContent as any).messages.map((m: any) => m.id)).toEqual([stored[1].id]);

    const got = await client.callTool({ name: 'get_message', arguments: { id: stored[1].id } });
    expect((got.structuredContent as any).metadata).toEqual({ source: 'agent' });

    const found = await client.callTool({
      name: 'search_messages',
      arguments: { query: 'ultramarine', mode: 'fulltext' },
    });
    const results = (found.structuredContent as any).results;
    expect(results.map((r: any) => r.message.id).sort()).toEqual(
      [stored[0].id, stored[1].id].sort(),
    );

    const conversations = await client.callTool({ name: 'list_conversations', arguments: {} });
    expect((conversations.structuredContent as any).conversations).toMatchObject([
      { id: 'chat-1', message_count: 2 },
    ]);

    const deleted = await client.callTool({
      name: 'delete_message',
      arguments: { id: stored[0].id },
    });
    expect(deleted.structuredContent).toEqual({ deleted: true, id: stored[0].id });
    const gone = await client.callTool({ name: 'get_message', arguments: { id: stored[0].id } });
    expect(errorOf(gone).code).toBe('not_found');
    // The text result mirrors the structured one, for hosts that show only text.
    expect(JSON.parse((got.content as any)[0].text)).toEqual(got.structuredContent);
    await client.close();
  });

  test('bad arguments are tool errors with the API’s codes, and change nothing', async () => {
    const { api_key, id } = await shared.tenant();
    const client = await connect(shared, api_key);
    const cases: [string, unknown, string][] = [
      ['add_messages', { conversation_id: 'c', messages: [] }, 'validation_failed'],
      [
        'add_messages',
        { conversation_id: 'c', messages: [{ role: 'robot', content: 'x' }] },
        'validation_failed',
      ],
      [
        'add_messages',
        { conversation_id: 'bad id!', messages: [{ role: 'user', content: 'x' }] },
        'validation_failed',
      ],
      [
        'add_messages',
        { conversation_id: 'c', messages: [{ role: 'user', content: 'x', extra: 1 }] },
        'validation_failed',
      ],
      [
        'add_messages',
        { conversation_id: 'c', messages: [{ role: 'user', content: '' }] },
        'validation_failed',
      ],
      [
        'add_messages',
        { conversation_id: 'c', messages: [{ role: 'user', content: 'x\u0000y' }] },
        'validation_failed',
      ],
      ['list_messages', { limit: 0 }, 'validation_failed'],
      ['list_messages', { limit: '10' }, 'validation_failed'],
      ['list_messages', { cursor: 'forged.cursor' }, 'invalid_cursor'],
      ['get_message', { id: 'not-a-uuid' }, 'validation_failed'],
      ['get_message', {}, 'validation_failed'],
      ['search_messages', { query: '   ' }, 'validation_failed'],
      [
        'search_messages',
        { query: 'x', created_after: '2024-02-30T00:00:00Z' },
        'validation_failed',
      ],
      // This app has no embeddings configured.
      ['search_messages', { query: 'x', mode: 'semantic' }, 'semantic_search_disabled'],
      ['delete_message', { id: crypto.randomUUID() }, 'not_found'],
      ['no_such_tool', {}, 'not_found'],
    ];
    for (const [name, args, code] of cases) {
      const result = await client.callTool({ name, arguments: args as Record<string, unknown> });
      const error = errorOf(result);
      expect({ name, args, code: error.code }).toEqual({ name, args, code });
      expect(error.request_id).toBeString();
    }
    const invalid = errorOf(
      await client.callTool({
        name: 'add_messages',
        arguments: { conversation_id: 'c', messages: [{ role: 'robot', content: 'x' }] },
      }),
    );
    expect(invalid.details.some((d: any) => d.path === '/messages/0/role')).toBe(true);
    const stored = await shared.call('GET', '/v1/messages', { key: api_key });
    expect(stored.json.messages).toEqual([]);
    void id;
    await client.close();
  });

  test('one tenant never sees another’s messages through MCP', async () => {
    const a = await shared.tenant('a');
    const b = await shared.tenant('b');
    const ca = await connect(shared, a.api_key);
    const cb = await connect(shared, b.api_key);
    const added = await ca.callTool({
      name: 'add_messages',
      arguments: {
        conversation_id: 'secret',
        messages: [{ role: 'user', content: 'pelican plans' }],
      },
    });
    const id = (added.structuredContent as any).messages[0].id;
    expect(errorOf(await cb.callTool({ name: 'get_message', arguments: { id } })).code).toBe(
      'not_found',
    );
    expect(errorOf(await cb.callTool({ name: 'delete_message', arguments: { id } })).code).toBe(
      'not_found',
    );
    const searched = await cb.callTool({
      name: 'search_messages',
      arguments: { query: 'pelican', mode: 'fulltext' },
    });
    expect((searched.structuredContent as any).results).toEqual([]);
    const listed = await cb.callTool({
      name: 'list_messages',
      arguments: { conversation_id: 'secret' },
    });
    expect((listed.structuredContent as any).messages).toEqual([]);
    const conversations = await cb.callTool({ name: 'list_conversations', arguments: {} });
    expect((conversations.structuredContent as any).conversations).toEqual([]);
    // A's cursor is refused for B.
    await ca.callTool({
      name: 'add_messages',
      arguments: { conversation_id: 'secret', messages: [{ role: 'user', content: 'more' }] },
    });
    const page = await ca.callTool({
      name: 'list_messages',
      arguments: { conversation_id: 'secret', limit: 1 },
    });
    const cursor = (page.structuredContent as any).next_cursor;
    expect(
      errorOf(
        await cb.callTool({
          name: 'list_messages',
          arguments: { conversation_id: 'secret', limit: 1, cursor },
        }),
      ).code,
    ).toBe('invalid_cursor');
    // Still there for A.
    expect((await ca.callTool({ name: 'get_message', arguments: { id } })).isError).toBeFalsy();
    await ca.close();
    await cb.close();
  });

  test('needs a valid tenant key, like /v1', async () => {
    await expect(connect(shared, null)).rejects.toThrow();
    await expect(connect(shared, 'ts_not_a_real_key')).rejects.toThrow();
    const res = await shared.call('POST', '/mcp', {
      body: { jsonrpc: '2.0', id: 1, method: 'tools/list' },
      headers: { accept: 'application/json, text/event-stream' },
    });
    expect(res.status).toBe(401);
    expect(res.json.error.code).toBe('unauthorized');
    const get = await shared.call('GET', '/mcp', { key: (await shared.tenant()).api_key });
    expect(get.status).toBe(405);
    expect(get.json.error.code).toBe('method_not_allowed');
  });

  test('an Idempotency-Key makes add_messages safe to retry', async () => {
    const { api_key } = await shared.tenant();
    const client = await connect(shared, api_key, { 'idempotency-key': 'mcp-retry-1' });
    const args = {
      conversation_id: 'c',
      messages: [{ role: 'user', content: 'only once' }],
    };
    const first = await client.callTool({ name: 'add_messages', arguments: args });
    const again = await client.callTool({ name: 'add_messages', arguments: args });
    expect((again.structuredContent as any).messages[0].id).toBe(
      (first.structuredContent as any).messages[0].id,
    );
    const other = await client.callTool({
      name: 'add_messages',
      arguments: { ...args, messages: [{ role: 'user', content: 'different' }] },
    });
    expect(errorOf(other).code).toBe('idempotency_conflict');
    const stored = await shared.call('GET', '/v1/messages?conversation_id=c', { key: api_key });
    expect(stored.json.messages.map((m: any) => m.content)).toEqual(['only once']);
    await client.close();
  });

  test('logs each call with its request id and tool, and counts it under /mcp', async () => {
    const { api_key } = await shared.tenant();
    const client = await connect(shared, api_key, { 'x-request-id': 'mcp-log-1' });
    await client.callTool({ name: 'list_conversations', arguments: {} });
    // The line is written once the response has gone.
    const find = () =>
      shared.logs.lines.find(
        (l) => l.request_id === 'mcp-log-1' && l.tool === 'list_conversations',
      );
    for (let i = 0; i < 50 && !find(); i++) await Bun.sleep(10);
    const line = find();
    expect(line).toMatchObject({ route: '/mcp', method: 'POST', status: 200 });
    // Plain HTTP shows the same headers as any route: request id and rate-limit state.
    const raw = await shared.call('POST', '/mcp', {
      key: api_key,
      body: {
        jsonrpc: '2.0',
        id: 7,
        method: 'tools/call',
        params: { name: 'list_conversations', arguments: {} },
      },
      headers: { accept: 'application/json, text/event-stream', 'x-request-id': 'mcp-raw-1' },
    });
    expect(raw.status).toBe(200);
    expect(raw.headers.get('x-request-id')).toBe('mcp-raw-1');
    expect(raw.headers.get('ratelimit-limit')).toBe('1000000');
    expect(raw.json).toMatchObject({
      jsonrpc: '2.0',
      id: 7,
      result: { structuredContent: { conversations: [] } },
    });
    const metrics = await shared.deps.metrics.registry.metrics();
    expect(metrics).toContain('route="/mcp"');
    await client.close();
  });
});

describe('MCP rate limits', () => {
  test('a tool call spends the budget of its HTTP route; HTTP and MCP share it', async () => {
    const t = await buildTestApp({
      RATE_LIMIT_WRITE_PER_MINUTE: '3',
      RATE_LIMIT_READ_PER_MINUTE: '1000',
    });
    apps.push(t);
    const { api_key } = await t.tenant();
    const client = await connect(t, api_key);
    // Two writes over HTTP...
    for (let i = 0; i < 2; i++) {
      const res = await t.call('POST', '/v1/messages', {
        key: api_key,
        body: { conversation_id: 'c', role: 'user', content: `http ${i}` },
      });
      expect(res.status).toBe(201);
    }
    // ...leave one for MCP; reads do not touch the write budget.
    for (let i = 0; i < 5; i++) {
      expect(
        (await client.callTool({ name: 'list_conversations', arguments: {} })).isError,
      ).toBeFalsy();
    }
    const add = (content: string) =>
      client.callTool({
        name: 'add_messages',
        arguments: { conversation_id: 'c', messages: [{ role: 'user', content }] },
      });
    expect((await add('mcp 1')).isError).toBeFalsy();
    const refused = errorOf(await add('mcp 2'));
    expect(refused.code).toBe('rate_limited');
    expect(refused.details).toMatchObject({ budget: 'write', limit: 3 });
    expect(refused.details.retry_after_seconds).toBeGreaterThan(0);
    // Spent over MCP is spent over HTTP too.
    const http = await t.call('POST', '/v1/messages', {
      key: api_key,
      body: { conversation_id: 'c', role: 'user', content: 'http 3' },
    });
    expect(http.status).toBe(429);
    const stored = await t.call('GET', '/v1/messages?conversation_id=c', { key: api_key });
    expect(stored.json.messages.map((m: any) => m.content)).toEqual(['http 0', 'http 1', 'mcp 1']);
    await client.close();
  });

  test('read tools spend the read budget', async () => {
    const t = await buildTestApp({
      RATE_LIMIT_WRITE_PER_MINUTE: '1000',
      RATE_LIMIT_READ_PER_MINUTE: '5',
    });
    apps.push(t);
    const { api_key } = await t.tenant();
    // Four reads: initialize, its notification, the client's try at a stream (GET, 405), and
    // tools/list.
    const client = await connect(t, api_key);
    await client.listTools();
    expect((await client.callTool({ name: 'list_messages', arguments: {} })).isError).toBeFalsy();
    const refused = errorOf(await client.callTool({ name: 'list_messages', arguments: {} }));
    expect(refused.code).toBe('rate_limited');
    expect(refused.details).toMatchObject({ budget: 'read', limit: 5 });
    const http = await t.call('GET', '/v1/messages', { key: api_key });
    expect(http.status).toBe(429);
    await client.close();
  });
});

const ACCEPT = { accept: 'application/json, text/event-stream' };
const addCall = (id: number, conversation: string) => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: {
    name: 'add_messages',
    arguments: { conversation_id: conversation, messages: [{ role: 'user', content: `m${id}` }] },
  },
});
/** The API error codes of the tool errors in a batch's answers, and how many succeeded. */
function outcomes(answers: any[]) {
  const codes = answers
    .filter((a) => a.result?.isError)
    .map((a) => JSON.parse(a.result.content[0].text).error.code);
  return { ok: answers.filter((a) => a.result && !a.result.isError).length, codes };
}

describe('MCP batches', () => {
  for (const path of ['/mcp', '/mcp/']) {
    test(`each tools/call of a batch on ${path} spends its own write`, async () => {
      const t = await buildTestApp({ RATE_LIMIT_WRITE_PER_MINUTE: '5' });
      apps.push(t);
      const { api_key } = await t.tenant();
      const batch = Array.from({ length: 50 }, (_, i) => addCall(i + 1, 'batch'));
      const res = await t.call('POST', path, { key: api_key, body: batch, headers: ACCEPT });
      expect(res.status).toBe(200);
      expect(res.json).toHaveLength(50);
      const { ok, codes } = outcomes(res.json);
      expect(ok).toBe(5);
      expect(codes).toEqual(Array.from({ length: 45 }, () => 'rate_limited'));
      expect(res.headers.get('ratelimit-remaining')).toBe('0');
      const stored = await t.call('GET', '/v1/messages?conversation_id=batch&limit=100', {
        key: api_key,
      });
      expect(stored.json.messages).toHaveLength(5);
      // Spent over MCP is spent over HTTP.
      const http = await t.call('POST', '/v1/messages', {
        key: api_key,
        body: { conversation_id: 'batch', role: 'user', content: 'http' },
      });
      expect(http.status).toBe(429);
    });
  }

  test('every other message of a batch is a read, and malformed tool calls are too', async () => {
    const t = await buildTestApp({ RATE_LIMIT_READ_PER_MINUTE: '10' });
    apps.push(t);
    const { api_key } = await t.tenant();
    const batch = [
      { jsonrpc: '2.0', id: 1, method: 'tools/list' },
      { jsonrpc: '2.0', id: 2, method: 'ping' },
      { jsonrpc: '2.0', id: 3, method: 'no/such/method' },
      { jsonrpc: '2.0', method: 'notifications/initialized' },
      // Refused by the SDK before any tool runs, but sent all the same.
      { jsonrpc: '2.0', id: 4, method: 'tools/call', params: { arguments: {} } },
      { jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'no_such_tool' } },
      { jsonrpc: '2.0', id: 6, method: 'tools/call', params: { name: 'list_messages' } },
    ];
    const first = await t.call('POST', '/mcp/', { key: api_key, body: batch, headers: ACCEPT });
    expect(first.status).toBe(200);
    expect(first.headers.get('ratelimit-remaining')).toBe('3');
    // A body that is not JSON runs nothing, and is one read all the same.
    const junk = await t.call('POST', '/mcp', {
      key: api_key,
      raw: '{"jsonrpc":',
      headers: { ...ACCEPT, 'content-type': 'application/json', 'x-request-id': 'mcp-junk' },
    });
    expect(junk.status).toBe(400);
    // It is counted as it ends (before its log line is written).
    for (let i = 0; i < 100 && !t.logs.lines.some((l) => l.request_id === 'mcp-junk'); i++) {
      await Bun.sleep(10);
    }
    const ping = await t.call('POST', '/mcp', {
      key: api_key,
      body: { jsonrpc: '2.0', id: 9, method: 'ping' },
      headers: ACCEPT,
    });
    expect(ping.status).toBe(200);
    expect(ping.headers.get('ratelimit-remaining')).toBe('1');
    // One read left: a batch of four non-tool messages is refused.
    const pings = [1, 2, 3, 4].map((id) => ({ jsonrpc: '2.0', id, method: 'ping' }));
    const refused = await t.call('POST', '/mcp', { key: api_key, body: pings, headers: ACCEPT });
    expect(refused.status).toBe(429);
    expect(refused.json.error.code).toBe('rate_limited');
    // An empty batch is a call too.
    const empty = await t.call('POST', '/mcp', { key: api_key, body: [], headers: ACCEPT });
    expect(empty.status).toBe(429);
  });

  test('/mcp/ is the same endpoint: a bad string in a tool argument is a tool error there too', async () => {
    const { api_key } = await shared.tenant();
    const call = {
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: {
        name: 'add_messages',
        arguments: { conversation_id: 'c', messages: [{ role: 'user', content: 'x\u0000y' }] },
      },
    };
    for (const path of ['/mcp', '/mcp/']) {
      const res = await shared.call('POST', path, { key: api_key, body: call, headers: ACCEPT });
      expect(res.status).toBe(200);
      expect(outcomes([res.json])).toEqual({ ok: 0, codes: ['validation_failed'] });
    }
  });

  test('with RATE_LIMIT_ENABLED=false, batches run uncounted', async () => {
    const t = await buildTestApp({ RATE_LIMIT_ENABLED: 'false' });
    apps.push(t);
    const { api_key } = await t.tenant();
    const batch = [
      addCall(1, 'free'),
      addCall(2, 'free'),
      { jsonrpc: '2.0', id: 3, method: 'ping' },
    ];
    const res = await t.call('POST', '/mcp/', { key: api_key, body: batch, headers: ACCEPT });
    expect(res.status).toBe(200);
    // Two tools called and one ping answered.
    expect(outcomes(res.json)).toEqual({ ok: 3, codes: [] });
    expect(res.headers.get('ratelimit-limit')).toBeNull();
  });

  test('without the rate limiter in front, the endpoint runs no tool (fails closed)', async () => {
    const t = await sharedApp();
    const { api_key } = await t.tenant();
    // The MCP module wired without the rate limiter: nothing can count its calls.
    const bare = new Elysia({ normalize: false })
      .use(requestId)
      .use(errors(t.deps.logger))
      .use(jsonBody(t.config.MAX_BODY_BYTES))
      .use(mcpModule(t.deps));
    const send = (body: unknown) =>
      bare.handle(
        new Request('http://localhost/mcp', {
          method: 'POST',
          headers: {
            authorization: `Bearer ${api_key}`,
            'content-type': 'application/json',
            ...ACCEPT,
          },
          body: JSON.stringify(body),
        }),
      );
    for (const body of [
      addCall(1, 'unguarded'),
      [addCall(2, 'unguarded')],
      { jsonrpc: '2.0', id: 1, method: 'tools/list' },
    ]) {
      const res = await send(body);
      expect(res.status).toBe(500);
      expect(((await res.json()) as any).error.code).toBe('internal_error');
    }
    const stored = await t.call('GET', '/v1/messages?conversation_id=unguarded', { key: api_key });
    expect(stored.json.messages).toEqual([]);
  });
});
