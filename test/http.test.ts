import { afterAll, describe, expect, test } from 'bun:test';
import { createServer } from 'node:net';
import { buildTestApp, sharedApp } from './support/app';

const t = await sharedApp();

describe('request ids', () => {
  test('echo a safe caller id and replace an unsafe one, on success and error alike', async () => {
    const ok = await t.call('GET', '/livez', { headers: { 'x-request-id': 'caller.id_1-2' } });
    expect(ok.headers.get('x-request-id')).toBe('caller.id_1-2');
    for (const unsafe of ['has space', 'x'.repeat(129), 'semi;colon', '']) {
      const res = await t.call('GET', '/v1/nowhere', { headers: { 'x-request-id': unsafe } });
      const id = res.headers.get('x-request-id');
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      expect(res.json.error.request_id).toBe(id);
    }
  });

  test('each request is logged once as JSON with its id, route and status, and no content', async () => {
    const { api_key } = await t.tenant();
    const secret = `content-${crypto.randomUUID()}`;
    const res = await t.call('POST', '/v1/messages', {
      key: api_key,
      body: { conversation_id: 'log', role: 'user', content: secret },
      headers: { 'x-request-id': 'log-check-1' },
    });
    expect(res.status).toBe(201);
    await Bun.sleep(5);
    const lines = t.logs.lines.filter((l) => l.request_id === 'log-check-1');
    expect(lines.length).toBe(1);
    expect(lines[0]).toMatchObject({
      level: 'info',
      method: 'POST',
      route: '/v1/messages',
      status: 201,
    });
    expect(lines[0]!.tenant_id).toBeString();
    expect(lines[0]!.duration_ms).toBeNumber();
    expect(lines[0]!.time).toBeString();
    expect(t.logs.raw.join('\n')).not.toContain(secret);
  });
});

describe('errors', () => {
  test('unknown routes and methods get 404 in the one error shape', async () => {
    for (const [method, path] of [
      ['GET', '/nope'],
      ['GET', '/v1'],
      ['PUT', '/v1/messages'],
      ['PATCH', '/v1/conversations'],
      ['GET', '/v1/admin'],
    ] as const) {
      const res = await t.call(method, path);
      expect(res.status).toBe(404);
      expect(res.json).toEqual({
        error: { code: 'not_found', message: expect.any(String), request_id: expect.any(String) },
      });
    }
  });
});

describe('probes', () => {
  test('livez and readyz answer 200 when the database is up and migrated', async () => {
    expect((await t.call('GET', '/livez')).json).toEqual({ status: 'ok' });
    expect((await t.call('GET', '/readyz')).json).toEqual({ status: 'ready' });
  });
});

describe('OpenAPI document', () => {
  test('lists every route with its responses', async () => {
    const res = await t.call('GET', '/openapi.json');
    expect(res.status).toBe(200);
    const paths = res.json.paths as Record<string, Record<string, { responses: object }>>;
    const expected: [string, string][] = [
      ['post', '/v1/messages'],
      ['get', '/v1/messages'],
      ['post', '/v1/messages/batch'],
      ['get', '/v1/messages/{id}'],
      ['delete', '/v1/messages/{id}'],
      ['get', '/v1/conversations'],
      ['get', '/v1/conversations/{id}'],
      ['delete', '/v1/conversations/{id}'],
      ['post', '/v1/admin/tenants'],
      ['get', '/v1/admin/tenants'],
      ['get', '/v1/admin/tenants/{id}'],
      ['patch', '/v1/admin/tenants/{id}'],
      ['post', '/v1/admin/tenants/{id}/keys'],
      ['get', '/livez'],
      ['get', '/readyz'],
      ['post', '/mcp'],
    ];
    for (const [method, path] of expected) {
      const op = paths[path]?.[method];
      expect({ method, path, documented: !!op }).toEqual({ method, path, documented: true });
      expect(Object.keys(op!.responses).length).toBeGreaterThan(0);
    }
    expect(Object.keys(paths['/v1/messages']!.post!.responses)).toEqual(
      expect.arrayContaining(['201', '401', '413', '415', '422', '429']),
    );
    // Every tenant route is rate-limited, and says so.
    for (const [method, path] of expected.filter(([, p]) => p.startsWith('/v1/'))) {
      expect({ method, path, has429: '429' in paths[path]![method]!.responses }).toEqual({
        method,
        path,
        has429: true,
      });
    }
    // Request bodies are documented as JSON with their schema.
    for (const [method, path] of [
      ['post', '/v1/messages'],
      ['post', '/v1/messages/batch'],
      ['post', '/v1/admin/tenants'],
      ['patch', '/v1/admin/tenants/{id}'],
    ] as const) {
      const body = paths[path]![method] as {
        requestBody?: { content: Record<string, { schema?: object }> };
      };
      expect(body.requestBody?.content['application/json']?.schema).toBeDefined();
    }
    const docs = await t.call('GET', '/docs');
    expect(docs.status).toBe(200);
    expect(docs.headers.get('content-type')).toContain('text/html');
  });
});

const closedPort = await new Promise<number>((resolve) => {
  const srv = createServer();
  srv.listen(0, '127.0.0.1', () => {
    const port = (srv.address() as { port: number }).port;
    srv.close(() => resolve(port));
  });
});
const down = await buildTestApp(
  {
    DATABASE_URL: `postgres://postgres@127.0.0.1:${closedPort}/postgres`,
    DB_CONNECT_TIMEOUT_MS: '1000',
  },
  { setup: false },
);
afterAll(() => down.close());

describe('an unreachable database', () => {
  test('answers 503 database_unavailable with Retry-After, quickly', async () => {
    const started = performance.now();
    const res = await down.call('POST', '/v1/admin/tenants', {
      key: 'test-admin-key-0123456789',
      body: { name: 'x' },
    });
    expect(performance.now() - started).toBeLessThan(5000);
    expect(res.status).toBe(503);
    expect(res.json.error.code).toBe('database_unavailable');
    expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
    // A key of the right shape, which only the database can tell about.
    const tenantRoute = await down.call('GET', '/v1/messages', { key: `ts_${'A'.repeat(43)}` });
    expect(tenantRoute.status).toBe(503);
  });

  test('readyz answers 503 while livez stays 200', async () => {
    expect((await down.call('GET', '/readyz')).status).toBe(503);
    expect((await down.call('GET', '/livez')).status).toBe(200);
  });
});
