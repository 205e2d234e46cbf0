// The MCP endpoint of the compiled binary, driven by the official SDK's own client over real
// HTTP, with semantic search on (a real PostgreSQL with pgvector and a local embeddings API).
import { afterAll, beforeAll, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { BUILD_TIMEOUT_MS, buildBinary, killAllServers, ServerProcess } from '../../harness/binary';
import { type EmbeddingServer, startEmbeddingServer } from '../../harness/embedding-server';
import { createDatabase } from '../../harness/postgres';
import { requirePgvector } from '../support/requires';

const ADMIN_KEY = 'e2e-mcp-admin-key-0123456789';
const WRITES_PER_MINUTE = 6;
const DIMENSIONS = 64;

const describeVector = await requirePgvector();
const dirs: string[] = [];
let server: ServerProcess;
let embeddings: EmbeddingServer;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'threadstore-e2e-mcp-'));
  dirs.push(dir);
  const [binary, url] = await Promise.all([
    buildBinary(dir),
    createDatabase(process.env.TEST_DATABASE_URL!, `e2e_mcp_${crypto.randomUUID().slice(0, 8)}`),
  ]);
  embeddings = startEmbeddingServer({ dimensions: DIMENSIONS });
  server = await new ServerProcess(
    binary,
    {
      DATABASE_URL: url,
      ADMIN_API_KEY: ADMIN_KEY,
      RATE_LIMIT_WRITE_PER_MINUTE: String(WRITES_PER_MINUTE),
      RETENTION_INTERVAL_MS: '0',
      EMBEDDING_URL: embeddings.url,
      EMBEDDING_API_KEY: embeddings.apiKey!,
      EMBEDDING_DIMENSIONS: String(DIMENSIONS),
      EMBEDDING_POLL_INTERVAL_MS: '50',
      EMBEDDING_MAX_RETRIES: '0',
      EMBEDDING_BREAKER_THRESHOLD: '1',
      EMBEDDING_BREAKER_COOLDOWN_MS: '60000',
    },
    dir,
  ).ready();
}, BUILD_TIMEOUT_MS);

afterAll(async () => {
  await killAllServers();
  await embeddings?.stop();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function tenant(name: string): Promise<{ id: string; key: string }> {
  const res = await server.call('POST', '/v1/admin/tenants', ADMIN_KEY, { name });
  expect(res.status).toBe(201);
  return { id: res.json.id, key: res.json.api_key };
}

async function connect(key: string): Promise<Client> {
  const client = new Client({ name: 'e2e', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(server.url('/mcp')), {
      requestInit: { headers: { authorization: `Bearer ${key}` } },
    }),
  );
  return client;
}

type ToolResult = Awaited<ReturnType<Client['callTool']>>;
const data = (r: ToolResult) => {
  expect(r.isError).toBeFalsy();
  return r.structuredContent as any;
};
const errorCode = (r: ToolResult) => {
  expect(r.isError).toBe(true);
  return JSON.parse((r.content as { text: string }[])[0]!.text).error.code as string;
};

describeVector('MCP against the binary', () => {
  test('the SDK client lists the tools and calls each one', async () => {
    const { key } = await tenant('agent');
    const client = await connect(key);
    expect(client.getServerVersion()?.name).toBe('threadstore');
    expect(client.getInstructions()).toContain('add_messages');
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual([
      'add_messages',
      'delete_message',
      'get_message',
      'list_conversations',
      'list_messages',
      'search_messages',
    ]);

    const added = data(
      await client.callTool({
        name: 'add_messages',
        arguments: {
          conversation_id: 'trip',
          messages: [
            { role: 'user', content: 'Book a night train from Vienna to Venice' },
            { role: 'assistant', content: 'The sleeper leaves Vienna at 21:27' },
            { role: 'user', content: 'Also remind me to pack an umbrella' },
          ],
        },
      }),
    ).messages;
    expect(added).toHaveLength(3);
    expect(added.every((m: any) => m.embedding_status === 'pending')).toBe(true);

    const page = data(
      await client.callTool({
        name: 'list_messages',
        arguments: { conversation_id: 'trip', limit: 2, order: 'desc' },
      }),
    );
    expect(page.messages.map((m: any) => m.id)).toEqual([added[2].id, added[1].id]);
    expect(page.next_cursor).toBeString();

    // Semantic search finds them once the worker has embedded them.
    const deadline = Date.now() + 10_000;
    let one = data(await client.callTool({ name: 'get_message', arguments: { id: added[0].id } }));
    while (one.embedding_status !== 'ready' && Date.now() < deadline) {
      await Bun.sleep(50);
      one = data(await client.callTool({ name: 'get_message', arguments: { id: added[0].id } }));
    }
    expect(one.embedding_status).toBe('ready');
    const semantic = data(
      await client.callTool({
        name: 'search_messages',
        arguments: {
          query: 'Book a night train from Vienna to Venice',
          mode: 'semantic',
          limit: 1,
        },
      }),
    );
    expect(semantic.mode).toBe('semantic');
    expect(semantic.results[0].message.id).toBe(added[0].id);
    const words = data(
      await client.callTool({
        name: 'search_messages',
        arguments: { query: 'umbrella', mode: 'fulltext' },
      }),
    );
    expect(words.results.map((r: any) => r.message.id)).toEqual([added[2].id]);

    expect(
      data(await client.callTool({ name: 'list_conversations', arguments: {} })),
    ).toMatchObject({
      conversations: [{ id: 'trip', message_count: 3 }],
    });
    expect(
      data(await client.callTool({ name: 'delete_message', arguments: { id: added[1].id } })),
    ).toEqual({ deleted: true, id: added[1].id });
    expect(
      errorCode(await client.callTool({ name: 'get_message', arguments: { id: added[1].id } })),
    ).toBe('not_found');
    await client.close();
  });

  test('errors are tool errors with the API codes, never transport failures', async () => {
    const { key } = await tenant('errors');
    const client = await connect(key);
    expect(
      errorCode(
        await client.callTool({
          name: 'add_messages',
          arguments: { conversation_id: 'x', messages: [{ role: 'user', content: 'a\u0000b' }] },
        }),
      ),
    ).toBe('validation_failed');
    expect(errorCode(await client.callTool({ name: 'get_message', arguments: { id: 42 } }))).toBe(
      'validation_failed',
    );
    expect(
      errorCode(
        await client.callTool({ name: 'get_message', arguments: { id: crypto.randomUUID() } }),
      ),
    ).toBe('not_found');
    // The embedding service goes away: semantic search is unavailable, hybrid degrades.
    embeddings.mode = 'fail500';
    try {
      expect(
        errorCode(
          await client.callTool({
            name: 'search_messages',
            arguments: { query: 'anything at all', mode: 'semantic' },
          }),
        ),
      ).toBe('embeddings_unavailable');
      const hybrid = data(
        await client.callTool({ name: 'search_messages', arguments: { query: 'anything' } }),
      );
      expect(hybrid).toMatchObject({ mode: 'fulltext', degraded: true });
    } finally {
      embeddings.mode = 'ok';
    }
    await client.close();
  });

  test('tenants stay apart through MCP', async () => {
    const a = await tenant('a');
    const b = await tenant('b');
    const ca = await connect(a.key);
    const cb = await connect(b.key);
    const [message] = data(
      await ca.callTool({
        name: 'add_messages',
        arguments: { conversation_id: 'private', messages: [{ role: 'user', content: 'zebra' }] },
      }),
    ).messages;
    expect(
      errorCode(await cb.callTool({ name: 'get_message', arguments: { id: message.id } })),
    ).toBe('not_found');
    expect(
      data(
        await cb.callTool({
          name: 'search_messages',
          arguments: { query: 'zebra', mode: 'fulltext' },
        }),
      ).results,
    ).toEqual([]);
    expect(
      data(await cb.callTool({ name: 'list_messages', arguments: { conversation_id: 'private' } }))
        .messages,
    ).toEqual([]);
    expect(data(await ca.callTool({ name: 'get_message', arguments: { id: message.id } })).id).toBe(
      message.id,
    );
    await ca.close();
    await cb.close();
  });

  test('a write budget spent over HTTP is the budget MCP sees', async () => {
    const { key } = await tenant('budget');
    for (let i = 0; i < WRITES_PER_MINUTE - 1; i++) {
      const res = await server.call('POST', '/v1/messages', key, {
        conversation_id: 'b',
        role: 'user',
        content: `http ${i}`,
      });
      expect(res.status).toBe(201);
    }
    const client = await connect(key);
    const add = (content: string) =>
      client.callTool({
        name: 'add_messages',
        arguments: { conversation_id: 'b', messages: [{ role: 'user', content }] },
      });
    data(await add('last one'));
    const refused = await add('one too many');
    expect(errorCode(refused)).toBe('rate_limited');
    const http = await server.call('GET', '/v1/messages?conversation_id=b&limit=100', key);
    expect(http.json.messages).toHaveLength(WRITES_PER_MINUTE);
    expect(http.json.messages.at(-1).content).toBe('last one');
    await client.close();
  });
});
