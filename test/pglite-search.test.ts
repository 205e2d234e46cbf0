// Semantic and hybrid search on the embedded database (PGlite with its bundled pgvector), with
// the real worker and a local embeddings server.
import { afterAll, expect, test } from 'bun:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTestApp } from './support/app';
import { startEmbeddingServer } from '../harness/embedding-server';

const dir = mkdtempSync(join(tmpdir(), 'threadstore-pglite-search-'));
const server = startEmbeddingServer({ dimensions: 256 });
const t = await buildTestApp({
  DATABASE_URL: '',
  DATA_DIR: dir,
  EMBEDDING_URL: server.url,
  EMBEDDING_API_KEY: server.apiKey!,
  EMBEDDING_MODEL: 'test-model',
  EMBEDDING_DIMENSIONS: '256',
  EMBEDDING_POLL_INTERVAL_MS: '50',
});
afterAll(async () => {
  await t.close();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('the embedded database embeds messages and answers semantic and hybrid searches', async () => {
  expect(t.deps.search.semantic).toBe(true);
  const { api_key } = await t.tenant();
  const contents = [
    'How do I get a refund for my order?',
    'The weather in Paris is sunny today',
    'Reset my password please, I forgot it',
  ];
  const res = await t.call('POST', '/v1/messages/batch', {
    key: api_key,
    body: {
      messages: contents.map((content) => ({ conversation_id: 'p', role: 'user', content })),
    },
  });
  expect(res.status).toBe(201);
  const deadline = Date.now() + 15_000;
  for (;;) {
    const list = await t.call('GET', '/v1/messages?conversation_id=p', { key: api_key });
    if (
      list.json.messages.every((m: { embedding_status: string }) => m.embedding_status === 'ready')
    )
      break;
    if (Date.now() > deadline) throw new Error(`not embedded: ${list.text}`);
    await Bun.sleep(100);
  }
  for (const mode of ['semantic', 'hybrid'] as const) {
    const found = await t.call('POST', '/v1/search', {
      key: api_key,
      body: { query: 'refunds for orders', mode },
    });
    expect(found.status).toBe(200);
    expect(found.json.mode).toBe(mode);
    expect(found.json.degraded).toBe(false);
    expect(found.json.results[0].message.content).toBe(contents[0]);
  }
}, 60_000);
