import { afterAll, describe, expect, test } from 'bun:test';
import { Elysia } from 'elysia';
import { clientIp, parseTrustProxy } from '../src/lib/client-ip';
import { routePathOf } from '../src/lib/path';
import { errors } from '../src/plugins/errors';
import { rateLimit } from '../src/plugins/rate-limit';
import { requestId } from '../src/plugins/request-id';
import { ADMIN_KEY, buildTestApp, type TestApp } from './support/app';
import { expectBudgetHeld } from './support/rate-limit';

const apps: TestApp[] = [];
async function appWith(env: Record<string, string>) {
  const app = await buildTestApp(env);
  apps.push(app);
  return app;
}
afterAll(async () => {
  for (const app of apps) await app.close();
});

const message = { conversation_id: 'rl', role: 'user', content: 'x' };

describe('write budget', () => {
  test('300 concurrent writes against a budget of 100 admit exactly 100', async () => {
    const t = await appWith({ RATE_LIMIT_WRITE_PER_MINUTE: '100' });
    const { api_key } = await t.tenant();
    const results = await Promise.all(
      Array.from({ length: 300 }, () =>
        t.call('POST', '/v1/messages', { key: api_key, body: message }),
      ),
    );
    expectBudgetHeld(results, 100);
    const list = await t.call('GET', '/v1/messages?limit=200', { key: api_key });
    expect(list.json.messages.length).toBe(100);
  });

  test('Retry-After counts down to the end of the window, not the full window', async () => {
    const t = await appWith({ RATE_LIMIT_WRITE_PER_MINUTE: '1', RATE_LIMIT_WINDOW_MS: '60000' });
    const { api_key } = await t.tenant();
    expect((await t.call('POST', '/v1/messages', { key: api_key, body: message })).status).toBe(
      201,
    );
    await Bun.sleep(2100);
    const limited = await t.call('POST', '/v1/messages', { key: api_key, body: message });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeLessThanOrEqual(58);
    expect(Number(limited.headers.get('ratelimit-reset'))).toBeLessThanOrEqual(58);
  });

  test('a window starts at the first request and then resets', async () => {
    const t = await appWith({ RATE_LIMIT_WRITE_PER_MINUTE: '3', RATE_LIMIT_WINDOW_MS: '1500' });
    const { api_key } = await t.tenant();
    const first = await t.call('POST', '/v1/messages', { key: api_key, body: message });
    // A fresh window is the full length whatever the wall clock says.
    expect(first.headers.get('ratelimit-reset')).toBe('2');
    expect(first.headers.get('ratelimit-limit')).toBe('3');
    expect(first.headers.get('ratelimit-remaining')).toBe('2');
    await t.call('POST', '/v1/messages', { key: api_key, body: message });
    await t.call('POST', '/v1/messages', { key: api_key, body: message });
    expect((await t.call('POST', '/v1/messages', { key: api_key, body: message })).status).toBe(
      429,
    );
    await Bun.sleep(1600);
    expect((await t.call('POST', '/v1/messages', { key: api_key, body: message })).status).toBe(
      201,
    );
  });

  test('requests that fail validation still count', async () => {
    const t = await appWith({ RATE_LIMIT_WRITE_PER_MINUTE: '5' });
    const { api_key } = await t.tenant();
    for (let i = 0; i < 5; i++) {
      const bad = await t.call('POST', '/v1/messages', { key: api_key, body: { nope: 1 } });
      expect(bad.status).toBe(422);
    }
    const good = await t.call('POST', '/v1/messages', { key: api_key, body: message });
    expect(good.status).toBe(429);
  });

  test('reads have their own budget', async () => {
    const t = await appWith({ RATE_LIMIT_WRITE_PER_MINUTE: '1', RATE_LIMIT_READ_PER_MINUTE: '2' });
    const { api_key } = await t.tenant();
    expect((await t.call('POST', '/v1/messages', { key: api_key, body: message })).status).toBe(
      201,
    );
    expect((await t.call('POST', '/v1/messages', { key: api_key, body: message })).status).toBe(
      429,
    );
    expect((await t.call('GET', '/v1/messages', { key: api_key })).status).toBe(200);
    expect((await t.call('GET', '/v1/conversations', { key: api_key })).status).toBe(200);
    expect((await t.call('GET', '/v1/messages', { key: api_key })).status).toBe(429);
    // A search is a read, though it is a POST.
    const search = await t.call('POST', '/v1/search', {
      key: api_key,
      body: { query: 'x', mode: 'fulltext' },
    });
    expect(search.status).toBe(429);
    expect(search.json.error.details.budget).toBe('read');
  });
});

describe('keys of the budget', () => {
  test('missing and wrong keys spend the client IP’s budget, not a tenant’s', async () => {
    const t = await appWith({ RATE_LIMIT_READ_PER_MINUTE: '5' });
    const { api_key } = await t.tenant();
    // A key in use is known to the instance; a key it has not seen lately is looked up only if
    // its address has budget left (see 'guessed keys never reach the database').
    expect((await t.call('GET', '/v1/messages', { key: api_key, ip: '10.0.0.9' })).status).toBe(
      200,
    );
    for (let i = 0; i < 5; i++) {
      const guess = await t.call('GET', '/v1/messages', { key: `ts_guess${i}`, ip: '10.0.0.1' });
      expect(guess.status).toBe(401);
    }
    const blocked = await t.call('GET', '/v1/messages', { key: 'ts_guess-more', ip: '10.0.0.1' });
    expect(blocked.status).toBe(429);
    expect((await t.call('GET', '/v1/messages', { ip: '10.0.0.1' })).status).toBe(429);
    // Another address has its own budget; the real tenant from the same address has its own too.
    expect((await t.call('GET', '/v1/messages', { key: 'ts_x', ip: '10.0.0.2' })).status).toBe(401);
    expect((await t.call('GET', '/v1/messages', { key: api_key, ip: '10.0.0.1' })).status).toBe(
      200,
    );
  });

  test('a spoofed X-Forwarded-For buys no fresh budget when proxies are not trusted', async () => {
    const t = await appWith({ RATE_LIMIT_READ_PER_MINUTE: '3' });
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await t.call('GET', '/v1/messages', {
        ip: '10.0.1.1',
        headers: { 'x-forwarded-for': `198.51.100.${i}` },
      });
      statuses.push(res.status);
    }
    expect(statuses).toEqual([401, 401, 401, 429, 429, 429]);
  });

  test('behind a trusted proxy each forwarded client has its own budget', async () => {
    const t = await appWith({ RATE_LIMIT_READ_PER_MINUTE: '1', TRUST_PROXY: '1' });
    const from = (client: string) =>
      t.call('GET', '/v1/messages', { ip: '10.9.9.9', headers: { 'x-forwarded-for': client } });
    expect((await from('198.51.100.1')).status).toBe(401);
    expect((await from('198.51.100.1')).status).toBe(429);
    expect((await from('198.51.100.2')).status).toBe(401);
    // A client prepending its own entry gains nothing: the proxy's entry is the one read.
    expect((await from('203.0.113.9, 198.51.100.1')).status).toBe(429);
  });

  test('admin routes and probes are never starved by tenant traffic', async () => {
    const t = await appWith({ RATE_LIMIT_READ_PER_MINUTE: '1', RATE_LIMIT_ADMIN_PER_MINUTE: '50' });
    const { api_key } = await t.tenant();
    await t.call('GET', '/v1/messages', { key: api_key });
    expect((await t.call('GET', '/v1/messages', { key: api_key })).status).toBe(429);
    expect((await t.call('GET', '/v1/messages')).status).toBe(401);
    expect((await t.call('GET', '/v1/messages')).status).toBe(429);
    expect((await t.call('GET', '/v1/admin/tenants', { key: ADMIN_KEY })).status).toBe(200);
    expect((await t.call('GET', '/livez')).status).toBe(200);
    expect((await t.call('GET', '/readyz')).status).toBe(200);
  });

  test('admin and operator traffic has a per-IP budget of its own', async () => {
    const t = await appWith({ RATE_LIMIT_ADMIN_PER_MINUTE: '3' });
    const statuses = [];
    for (let i = 0; i < 4; i++)
      statuses.push((await t.call('GET', '/metrics', { ip: '10.7.7.7' })).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect((await t.call('GET', '/metrics', { ip: '10.7.7.8' })).status).toBe(200);
  });

  test('probes are never counted: 700 of each from one address with a budget of 3', async () => {
    const t = await appWith({
      RATE_LIMIT_ADMIN_PER_MINUTE: '3',
      RATE_LIMIT_READ_PER_MINUTE: '3',
      RATE_LIMIT_WRITE_PER_MINUTE: '3',
    });
    const statuses = new Map<string, number>();
    for (let round = 0; round < 14; round++) {
      const answers = await Promise.all(
        Array.from({ length: 100 }, (_, i) =>
          t.call('GET', ['/livez', '/readyz', '/livez/', '/readyz/'][i % 4]!, { ip: '10.7.7.9' }),
        ),
      );
      for (const res of answers) {
        expect(res.headers.get('ratelimit-limit')).toBeNull();
        statuses.set(String(res.status), (statuses.get(String(res.status)) ?? 0) + 1);
      }
      // The probes' address has spent nothing meanwhile: HEAD probes and routes that count.
      const head = await t.call('HEAD', '/livez', { ip: '10.7.7.9' });
      expect(head.status).toBe(200);
    }
    expect(Object.fromEntries(statuses)).toEqual({ '200': 1400 });
    expect(
      (await t.call('GET', '/metrics', { ip: '10.7.7.9' })).headers.get('ratelimit-remaining'),
    ).toBe('2');
  });
});

describe('the budget is the route’s, whatever the spelling', () => {
  test('routePathOf reads a path as the router does', () => {
    const of = (path: string) => routePathOf(`http://localhost${path}`);
    expect(of('/mcp')).toBe('/mcp');
    expect(of('/mcp/')).toBe('/mcp');
    expect(of('/mcp/?a=/b/')).toBe('/mcp');
    expect(of('/v1/search/?q#x')).toBe('/v1/search');
    expect(of('/')).toBe('/');
    // Spellings the router does not match stay apart (they get 404 from any route).
    expect(of('//mcp')).toBe('//mcp');
    expect(of('/mcp//')).toBe('/mcp/');
    expect(of('/%6Dcp')).toBe('/%6Dcp');
    expect(of('/livez#x')).toBe('/livez#x');
  });

  test('trailing slashes are charged as the route: writes, searches, admin', async () => {
    const t = await appWith({
      RATE_LIMIT_WRITE_PER_MINUTE: '2',
      RATE_LIMIT_READ_PER_MINUTE: '2',
      RATE_LIMIT_ADMIN_PER_MINUTE: '2',
    });
    const { api_key } = await t.tenant();
    const spelt = ['/v1/messages', '/v1/messages/', '/v1/messages/?x=1'];
    const writes = [];
    for (const path of spelt)
      writes.push(await t.call('POST', path, { key: api_key, body: message }));
    expect(writes.map((r) => r.status)).toEqual([201, 201, 429]);
    const searches = [];
    for (const path of ['/v1/search/', '/v1/search', '/v1/search/']) {
      searches.push(
        await t.call('POST', path, { key: api_key, body: { query: 'x', mode: 'fulltext' } }),
      );
    }
    expect(searches.map((r) => r.status)).toEqual([200, 200, 429]);
    expect(searches[2]!.json.error.details.budget).toBe('read');
    const admin = [];
    for (const path of ['/v1/admin/tenants/', '/v1/admin/health/', '/v1/admin/tenants']) {
      admin.push(await t.call('GET', path, { key: ADMIN_KEY, ip: '10.8.0.1' }));
    }
    expect(admin.map((r) => r.status)).toEqual([200, 200, 429]);
    expect(admin[2]!.json.error.details.budget).toBe('admin');
  });

  test('a request read as another route than the router matched is counted as its own', async () => {
    const t = await appWith({ RATE_LIMIT_READ_PER_MINUTE: '1' });
    // A route routePathOf cannot name: its registered path ends in a slash, so a request for it
    // is read as the probe /livez (free), and only the check at the route can count it.
    let ran = 0;
    const app = new Elysia()
      .use(requestId)
      .use(rateLimit(t.deps))
      .use(errors(t.deps.logger))
      .get('/livez/', () => {
        ran++;
        return 'ok';
      });
    const get = () => app.handle(new Request('http://localhost/livez/'));
    expect((await get()).status).toBe(200);
    expect((await get()).status).toBe(429);
    expect(ran).toBe(1);
    expect(t.logs.lines).toContainEqual(
      expect.objectContaining({ route: '/livez/', counted_as: 'free', level: 'error' }),
    );
  });
});

describe('per-tenant overrides', () => {
  test('take effect at once without a restart, and null restores the default', async () => {
    const t = await appWith({ RATE_LIMIT_WRITE_PER_MINUTE: '100' });
    const tenant = await t.tenant();
    const set = await t.call('PATCH', `/v1/admin/tenants/${tenant.id}`, {
      key: ADMIN_KEY,
      body: { rate_limit_write_per_minute: 2 },
    });
    expect(set.status).toBe(200);
    expect(set.json.rate_limit_write_per_minute).toBe(2);
    const post = () => t.call('POST', '/v1/messages', { key: tenant.api_key, body: message });
    expect((await post()).headers.get('ratelimit-limit')).toBe('2');
    expect((await post()).status).toBe(201);
    expect((await post()).status).toBe(429);
    const reset = await t.call('PATCH', `/v1/admin/tenants/${tenant.id}`, {
      key: ADMIN_KEY,
      body: { rate_limit_write_per_minute: null },
    });
    expect(reset.json.rate_limit_write_per_minute).toBeNull();
    expect((await post()).status).toBe(201);
    const shown = await t.call('GET', `/v1/admin/tenants/${tenant.id}`, { key: ADMIN_KEY });
    expect(shown.json.rate_limit_write_per_minute).toBeNull();
  });

  test('refuses overrides that are not positive integers', async () => {
    const t = await appWith({});
    const tenant = await t.tenant();
    for (const value of [0, -1, 1.5, '10', true]) {
      const res = await t.call('PATCH', `/v1/admin/tenants/${tenant.id}`, {
        key: ADMIN_KEY,
        body: { rate_limit_read_per_minute: value },
      });
      expect(res.status).toBe(422);
    }
  });
});

describe('rate-limit headers', () => {
  test('are on successes and on errors alike', async () => {
    const t = await appWith({ RATE_LIMIT_READ_PER_MINUTE: '10' });
    const { api_key } = await t.tenant();
    for (const res of [
      await t.call('GET', '/v1/messages', { key: api_key }),
      await t.call('GET', '/v1/messages', { key: 'ts_wrong' }),
      await t.call('GET', '/v1/messages?limit=0', { key: api_key }),
      await t.call('GET', '/v1/nowhere', { key: api_key }),
    ]) {
      expect(res.headers.get('ratelimit-limit')).toBe('10');
      expect(res.headers.get('ratelimit-remaining')).toMatch(/^\d+$/);
      expect(res.headers.get('ratelimit-reset')).toMatch(/^\d+$/);
    }
  });
});

describe('client address from TRUST_PROXY', () => {
  test('parses the three forms', () => {
    expect(parseTrustProxy('false')).toEqual({ kind: 'none' });
    expect(parseTrustProxy('')).toEqual({ kind: 'none' });
    expect(parseTrustProxy('2')).toEqual({ kind: 'hops', hops: 2 });
    expect(parseTrustProxy('true')).toEqual({ kind: 'hops', hops: 1 });
    expect(parseTrustProxy('10.0.0.1, 10.0.0.2')).toEqual({
      kind: 'list',
      proxies: new Set(['10.0.0.1', '10.0.0.2']),
    });
  });

  test('reads X-Forwarded-For from the right, past trusted proxies only', () => {
    const none = parseTrustProxy('false');
    expect(clientIp('10.0.0.5', '1.2.3.4', none)).toBe('10.0.0.5');
    const hop = parseTrustProxy('1');
    expect(clientIp('10.0.0.5', '1.2.3.4', hop)).toBe('1.2.3.4');
    expect(clientIp('10.0.0.5', 'evil, 1.2.3.4', hop)).toBe('1.2.3.4');
    expect(clientIp('10.0.0.5', null, hop)).toBe('10.0.0.5');
    const two = parseTrustProxy('2');
    expect(clientIp('10.0.0.5', '9.9.9.9, 1.2.3.4, 10.0.0.4', two)).toBe('1.2.3.4');
    const list = parseTrustProxy('10.0.0.5,10.0.0.4');
    expect(clientIp('10.0.0.5', 'evil, 1.2.3.4, 10.0.0.4', list)).toBe('1.2.3.4');
    expect(clientIp('10.0.0.9', '1.2.3.4', list)).toBe('10.0.0.9');
    expect(clientIp('::ffff:10.0.0.5', '1.2.3.4', list)).toBe('1.2.3.4');
  });
});
