// A database where pgvector cannot be enabled (here: a role that is not a superuser, which
// pgvector, an untrusted extension, requires): the service still starts, full-text search works, semantic search is refused as
// a 4xx, and health says why.
import { afterAll, expect, test } from 'bun:test';
import postgres from 'postgres';
import { ADMIN_KEY, buildTestApp, type TestApp } from './support/app';
import { startEmbeddingServer } from '../harness/embedding-server';
import { createDatabase } from '../harness/postgres';

const admin = process.env.TEST_DATABASE_URL!;
const name = `nopgv_${crypto.randomUUID().slice(0, 8)}`;
const role = `limited_${crypto.randomUUID().slice(0, 8)}`;
const url = await createDatabase(admin, name);
const sql = postgres(url, { max: 1, onnotice: () => {} });
await sql.unsafe(`create role ${role} login password 'limited'`);
// It may create schemas and tables, but not pgvector: an untrusted extension needs a superuser.
await sql.unsafe(`grant create on database ${name} to ${role}`);
await sql.unsafe(`grant usage, create on schema public to ${role}`);
await sql.end();
const limitedUrl = url.replace('postgres://postgres@', `postgres://${role}:limited@`);

const server = startEmbeddingServer({ dimensions: 16 });
let t: TestApp | undefined;
afterAll(async () => {
  await t?.close();
  await server.stop();
});

test('starts without pgvector, serves full-text search, refuses semantic with a 4xx', async () => {
  t = await buildTestApp({
    DATABASE_URL: limitedUrl,
    EMBEDDING_URL: server.url,
    EMBEDDING_API_KEY: server.apiKey!,
    EMBEDDING_DIMENSIONS: '16',
  });
  expect(t.deps.search.semantic).toBe(false);
  expect(t.deps.search.semanticReason).toContain('pgvector');
  const { api_key } = await t.tenant();
  const created = await t.call('POST', '/v1/messages', {
    key: api_key,
    body: { conversation_id: 'n', role: 'user', content: 'full text still works' },
  });
  expect(created.status).toBe(201);
  expect(created.json.embedding_status).toBe('disabled');
  const hybrid = await t.call('POST', '/v1/search', { key: api_key, body: { query: 'full text' } });
  expect(hybrid.status).toBe(200);
  expect(hybrid.json.mode).toBe('fulltext');
  expect(hybrid.json.results.length).toBe(1);
  const semantic = await t.call('POST', '/v1/search', {
    key: api_key,
    body: { query: 'full text', mode: 'semantic' },
  });
  expect(semantic.status).toBe(422);
  expect(semantic.json.error.code).toBe('semantic_search_disabled');
  // The admin embedding routes answer the same code with the same status.
  for (const path of ['/v1/admin/embeddings/reindex', '/v1/admin/embeddings/retry']) {
    const admin = await t.call('POST', path, { key: ADMIN_KEY });
    expect({ path, status: admin.status, code: admin.json.error.code }).toEqual({
      path,
      status: 422,
      code: 'semantic_search_disabled',
    });
  }
  const health = await t.call('GET', '/v1/admin/health', { key: ADMIN_KEY });
  expect(health.json.checks.embeddings[0]).toMatchObject({ status: 'warn' });
  expect(health.json.checks.embeddings[0].output).toContain('pgvector is not installed');
  expect(server.calls).toBe(0);
}, 30_000);
