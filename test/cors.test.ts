import { afterAll, describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { ADMIN_KEY, buildTestApp } from './support/app';

const ALLOWED = 'https://app.example.com';
const OTHER = 'https://evil.example.net';
const t = await buildTestApp({
  CORS_ORIGINS: `${ALLOWED}, https://admin.example.com`,
  CORS_MAX_AGE: '321',
  RATE_LIMIT_WRITE_PER_MINUTE: '3',
});
const off = await buildTestApp({ CORS_ORIGINS: '' });
afterAll(async () => {
  await t.close();
  await off.close();
});
const { api_key } = await t.tenant();

const preflight = (app: typeof t, origin: string) =>
  app.call('OPTIONS', '/v1/messages', {
    headers: {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization, content-type',
    },
  });

describe('preflight', () => {
  test('an allowed origin gets the explicit lists, credentials and max age', async () => {
    const res = await preflight(t, ALLOWED);
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    expect(res.headers.get('access-control-allow-headers')).toBe(
      'Authorization, Content-Type, X-Request-Id, Idempotency-Key, Mcp-Protocol-Version',
    );
    expect(res.headers.get('access-control-allow-methods')).toContain('PATCH');
    expect(res.headers.get('access-control-max-age')).toBe('321');
    expect(res.headers.get('vary')).toContain('Origin');
  });

  test('a disallowed origin gets no Access-Control-Allow-Origin', async () => {
    for (const origin of [OTHER, 'null', 'app.example.com', `${ALLOWED}.evil.com`, 'constructor']) {
      const res = await preflight(t, origin);
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
    }
  });

  test('is never rate-limited or authenticated', async () => {
    for (let i = 0; i < 10; i++) expect((await preflight(t, ALLOWED)).status).toBe(204);
  });
});

describe('responses', () => {
  const expectCors = (res: { headers: Headers }) => {
    expect(res.headers.get('access-control-allow-origin')).toBe(ALLOWED);
    const exposed = res.headers.get('access-control-expose-headers') ?? '';
    for (const h of ['X-Request-Id', 'RateLimit-Remaining', 'Retry-After'])
      expect(exposed).toContain(h);
  };

  test('carry CORS headers for an allowed origin on success and on every kind of error', async () => {
    const headers = { origin: ALLOWED };
    const ok = await t.call('GET', '/v1/messages', { key: api_key, headers });
    expect(ok.status).toBe(200);
    expectCors(ok);
    const cases: [number, Promise<{ status: number; headers: Headers }>][] = [
      [401, t.call('GET', '/v1/messages', { headers })],
      [404, t.call('GET', '/v1/nowhere', { key: api_key, headers })],
      [
        413,
        t.call('POST', '/v1/messages', {
          key: api_key,
          headers: { ...headers, 'content-type': 'application/json' },
          raw: 'x'.repeat(5 * 1024 * 1024),
        }),
      ],
      [
        415,
        t.call('POST', '/v1/messages', {
          key: api_key,
          headers: { ...headers, 'content-type': 'text/plain' },
          raw: 'x',
        }),
      ],
      [422, t.call('GET', '/v1/messages?limit=0', { key: api_key, headers })],
    ];
    for (const [status, pending] of cases) {
      const res = await pending;
      expect(res.status).toBe(status);
      expectCors(res);
    }
  });

  test('carry CORS headers on 429 and 500', async () => {
    const headers = { origin: ALLOWED };
    const { api_key: key } = await t.tenant();
    let limited;
    for (let i = 0; i < 5; i++) {
      limited = await t.call('POST', '/v1/messages', {
        key,
        headers,
        body: { conversation_id: 'c', role: 'user', content: 'x' },
      });
    }
    expect(limited!.status).toBe(429);
    expectCors(limited!);

    await t.db.execute(
      sql.raw(`create or replace function test_cors_fail() returns trigger language plpgsql as $$
        begin raise exception 'cors test failure'; end $$`),
    );
    const { api_key: other } = await t.tenant();
    await t.db.execute(
      sql.raw(`create trigger test_cors_fail before insert on messages
      for each row when (new.content = 'cors-500') execute function test_cors_fail()`),
    );
    try {
      const failed = await t.call('POST', '/v1/messages', {
        key: other,
        headers,
        body: { conversation_id: 'c', role: 'user', content: 'cors-500' },
      });
      expect(failed.status).toBe(500);
      expectCors(failed);
    } finally {
      await t.db.execute(sql.raw('drop trigger if exists test_cors_fail on messages'));
    }
  });

  test('a disallowed origin gets no Access-Control-Allow-Origin, on success or error', async () => {
    const ok = await t.call('GET', '/v1/messages', { key: api_key, headers: { origin: OTHER } });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('access-control-allow-origin')).toBeNull();
    const err = await t.call('GET', '/v1/messages', { headers: { origin: OTHER } });
    expect(err.headers.get('access-control-allow-origin')).toBeNull();
  });

  test('with no CORS_ORIGINS there is no cross-origin access at all', async () => {
    const { api_key: key } = await off.tenant();
    const res = await off.call('GET', '/v1/messages', { key, headers: { origin: ALLOWED } });
    expect(res.status).toBe(200);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(res.headers.get('access-control-allow-credentials')).toBeNull();
    const pre = await preflight(off, ALLOWED);
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    expect((await off.call('GET', '/v1/admin/tenants', { key: ADMIN_KEY })).status).toBe(200);
  });
});
