import { afterAll, describe, expect, spyOn, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { createApp } from '../src/app';
import { rowsOf } from '../src/db/raw';
import type { DatabaseHandle } from '../src/db/types';
import { createDeps } from '../src/deps';
import { KeyResolver, UNCONFIRMED_TTL_MS } from '../src/auth/resolver';
import { ADMIN_KEY, buildTestApp, type TestApp } from './support/app';
import { type PostgresCluster, startPostgres } from '../harness/postgres';

// Two instances on one database, each caching keys far longer than any test runs: whatever
// reaches B within a second came through LISTEN/NOTIFY (or the outage rules), not expiry.
const LONG_TTL = { AUTH_CACHE_TTL_MS: '600000' };
const a = await buildTestApp(LONG_TTL);
const b = await buildTestApp(LONG_TTL);
afterAll(async () => {
  await Promise.all([a.close(), b.close()]);
});

const admin = { key: ADMIN_KEY };
const POLL_MS = 50;
/** The promise under test: a change reaches every instance within this. */
const PROMPT_MS = 1000;

const status = async (app: TestApp, key: string) =>
  (await app.call('GET', '/v1/messages?limit=1', { key })).status;

/** Polls until `check` holds, for at most `ms`; returns the time it took. */
async function within(ms: number, check: () => Promise<boolean> | boolean): Promise<number> {
  const started = performance.now();
  for (;;) {
    if (await check()) return performance.now() - started;
    if (performance.now() - started > ms) throw new Error(`not within ${ms} ms`);
    await Bun.sleep(POLL_MS);
  }
}

const listening = (app: TestApp) => app.deps.keys.listenerState().listening;
await within(5000, () => listening(a) && listening(b));

/** Revokes the tenant's keys behind every instance's back: no NOTIFY is sent. */
async function expireSilently(tenantId: string) {
  await a.db.execute(
    sql`update api_keys set expires_at = now() - interval '1 second' where tenant_id = ${tenantId}`,
  );
}

describe('a change made on one instance reaches another within a second', () => {
  test('a rotated key is refused, and the new one accepted', async () => {
    const tenant = await a.tenant();
    expect(await status(b, tenant.api_key)).toBe(200);
    const rotated = await a.call('POST', `/v1/admin/tenants/${tenant.id}/keys`, admin);
    expect(rotated.status).toBe(201);
    await within(PROMPT_MS, async () => (await status(b, tenant.api_key)) === 401);
    expect(await status(b, rotated.json.api_key)).toBe(200);
  });

  test('a key rotated with a grace period works until the grace period ends', async () => {
    const tenant = await a.tenant();
    expect(await status(b, tenant.api_key)).toBe(200);
    const rotated = await a.call('POST', `/v1/admin/tenants/${tenant.id}/keys`, {
      ...admin,
      body: { grace_seconds: 2 },
    });
    expect(rotated.status).toBe(201);
    // B reads the key again and caches it only until its new expiry.
    await Bun.sleep(200);
    expect(await status(b, tenant.api_key)).toBe(200);
    const expiry = Date.parse(rotated.json.previous_key_expires_at);
    await Bun.sleep(Math.max(0, expiry - Date.now()));
    await within(PROMPT_MS, async () => (await status(b, tenant.api_key)) === 401);
  });

  test('a disabled tenant is refused, and served again once enabled', async () => {
    const tenant = await a.tenant();
    expect(await status(b, tenant.api_key)).toBe(200);
    const patch = (disabled: boolean) =>
      a.call('PATCH', `/v1/admin/tenants/${tenant.id}`, { ...admin, body: { disabled } });
    expect((await patch(true)).status).toBe(200);
    await within(PROMPT_MS, async () => (await status(b, tenant.api_key)) === 403);
    expect((await patch(false)).status).toBe(200);
    await within(PROMPT_MS, async () => (await status(b, tenant.api_key)) === 200);
  });

  test('a deleted tenant is refused', async () => {
    const tenant = await a.tenant();
    expect(await status(b, tenant.api_key)).toBe(200);
    expect((await a.call('DELETE', `/v1/admin/tenants/${tenant.id}`, admin)).status).toBe(200);
    await within(PROMPT_MS, async () => (await status(b, tenant.api_key)) === 401);
  });
});

describe('a lost LISTEN connection', () => {
  test('drops the whole cache when it is back, so a change it missed takes effect', async () => {
    const tenant = await a.tenant();
    expect(await status(b, tenant.api_key)).toBe(200);
    await expireSilently(tenant.id);
    // Still served: B cached the key and heard nothing.
    await Bun.sleep(300);
    expect(await status(b, tenant.api_key)).toBe(200);
    const before = b.deps.keys.listenerState().since;

    const killed = await a.db.execute(
      sql`select pg_terminate_backend(pid) from pg_stat_activity
          where application_name = 'threadstore-listen'`,
    );
    // This file's two instances at least (others' too, which only costs them their caches).
    expect(rowsOf(killed).length).toBeGreaterThanOrEqual(2);
    await within(PROMPT_MS, async () => (await status(b, tenant.api_key)) === 401);
    // Back to listening on a new connection, and announcements reach B again.
    await within(5000, () => listening(b) && b.deps.keys.listenerState().since !== before);
    const other = await a.tenant();
    expect(await status(b, other.api_key)).toBe(200);
    await a.call('POST', `/v1/admin/tenants/${other.id}/keys`, admin);
    await within(PROMPT_MS, async () => (await status(b, other.api_key)) === 401);
  });

  test('one that stops answering is noticed: cached keys are then trusted for a second', async () => {
    const tenant = await a.tenant();
    expect(await status(b, tenant.api_key)).toBe(200);
    // Past the fallback bound: from here on only the listener's heartbeats vouch for the entry.
    await Bun.sleep(UNCONFIRMED_TTL_MS + 100);
    expect(await status(b, tenant.api_key)).toBe(200);
    // Frozen, as a hung server or a partitioned network would leave it: the socket stays open.
    const pids = rowsOf<{ pid: number }>(
      await a.db.execute(
        sql`select pid from pg_stat_activity where application_name = 'threadstore-listen'`,
      ),
    ).map((r) => r.pid);
    expect(pids.length).toBeGreaterThanOrEqual(2);
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    try {
      expect((await a.call('POST', `/v1/admin/tenants/${tenant.id}/keys`, admin)).status).toBe(201);
      await within(PROMPT_MS, async () => (await status(b, tenant.api_key)) === 401);
    } finally {
      for (const pid of pids) process.kill(pid, 'SIGCONT');
    }
  });

  test('while it is down, cached keys are trusted for at most a second', async () => {
    const tenant = await a.tenant();
    // Never connected: the state of a process whose listener is down.
    const down = new KeyResolver(b.db, 600_000);
    expect((await down.resolve(tenant.api_key))?.id).toBe(tenant.id);
    await expireSilently(tenant.id);
    const cachedAt = performance.now();
    expect((await down.resolve(tenant.api_key))?.id).toBe(tenant.id);
    await within(
      UNCONFIRMED_TTL_MS + 200,
      async () => (await down.resolve(tenant.api_key)) === null,
    );
    expect(performance.now() - cachedAt).toBeLessThan(UNCONFIRMED_TTL_MS + 200);
  });

  test('while it is up, cached keys last the configured time', async () => {
    const tenant = await a.tenant();
    const up = new KeyResolver(b.db, 600_000);
    up.follow(listeningDatabase(b.database));
    expect((await up.resolve(tenant.api_key))?.id).toBe(tenant.id);
    await expireSilently(tenant.id);
    await Bun.sleep(UNCONFIRMED_TTL_MS + 200);
    expect((await up.resolve(tenant.api_key))?.id).toBe(tenant.id);
    up.forgetTenant(tenant.id);
    expect(await up.resolve(tenant.api_key)).toBeNull();
  });

  test('is a warning in health and metrics, never a readiness failure', async () => {
    const deps = createDeps(b.config, b.deps.logger, silentDatabase(b.database));
    const app = createApp(deps);
    const get = (path: string, key?: string) =>
      app.handle(
        new Request(`http://localhost${path}`, {
          headers: key ? { authorization: `Bearer ${key}` } : {},
        }),
      );

    const ready = await get('/readyz');
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as any).checks['keys:listener'][0]).toMatchObject({
      status: 'warn',
    });
    const health = await get('/v1/admin/health', ADMIN_KEY);
    expect(health.status).toBe(200);
    const report = (await health.json()) as any;
    expect(report.checks['keys:listener'][0]).toMatchObject({
      status: 'warn',
      observedValue: false,
    });
    expect(report.status).toBe('warn');
    expect(report.output).toContain('keys:listener');
    expect(await (await get('/metrics')).text()).toContain('threadstore_key_listener_up 0');

    expect((await b.call('GET', '/readyz')).json).toEqual({ status: 'ready' });
    const healthy = await b.call('GET', '/v1/admin/health', admin);
    expect(healthy.json.checks['keys:listener'][0]).toMatchObject({
      status: 'pass',
      observedValue: true,
    });
    expect((await b.call('GET', '/metrics')).text).toContain('threadstore_key_listener_up 1');
  });
});

describe('lookups of a key in use', () => {
  const TTL = 1000;

  /**
   * A new tenant's key, cached for TTL by a resolver whose database reads are counted (they
   * still go to the database); `tenantOf` resolves it and returns the tenant id, or null.
   */
  async function cachedKey() {
    const tenant = await a.tenant();
    const resolver = new KeyResolver(b.db, TTL);
    resolver.follow(listeningDatabase(b.database));
    const reads = spyOn(resolver as unknown as { read: () => unknown }, 'read');
    const tenantOf = async () => (await resolver.resolve(tenant.api_key))?.id ?? null;
    expect(await tenantOf()).toBe(tenant.id);
    return { tenant, reads, tenantOf };
  }

  test('a key in use is read again before it goes stale, so requests never wait on it', async () => {
    const { tenant, reads, tenantOf } = await cachedKey();
    // Within the first four fifths of its life: served from the cache, no read.
    await Bun.sleep(TTL * 0.5);
    expect(await tenantOf()).toBe(tenant.id);
    expect(reads).toHaveBeenCalledTimes(1);
    // In the last fifth: still served from the cache, and read again behind the request.
    await Bun.sleep(TTL * 0.4);
    expect(await tenantOf()).toBe(tenant.id);
    expect(reads).toHaveBeenCalledTimes(2);
    // Past the first entry's TTL (and the background read back): the refreshed entry answers
    // without another read.
    await Bun.sleep(TTL * 0.35);
    expect(await tenantOf()).toBe(tenant.id);
    expect(reads).toHaveBeenCalledTimes(2);
  });

  test('a background read that never comes back holds nothing up', async () => {
    const { tenant, reads, tenantOf } = await cachedKey();
    // The background read goes to a connection that never answers.
    reads.mockImplementationOnce(() => new Promise(() => {}));
    await Bun.sleep(TTL * 0.85);
    expect(await tenantOf()).toBe(tenant.id);
    expect(await tenantOf()).toBe(tenant.id);
    expect(reads).toHaveBeenCalledTimes(2);
    // Once the entry has expired, requests read for themselves, as for a key not cached.
    await Bun.sleep(TTL * 0.25);
    expect(await tenantOf()).toBe(tenant.id);
    expect(reads).toHaveBeenCalledTimes(3);
  });

  test('a key revoked behind the back of the cache is dropped by the background read', async () => {
    const { tenant, tenantOf } = await cachedKey();
    await expireSilently(tenant.id);
    await Bun.sleep(TTL * 0.85);
    // Served once more while the background read runs; refused as soon as it is back.
    expect(await tenantOf()).toBe(tenant.id);
    await within(100, async () => (await tenantOf()) === null);
  });
});

describe('when the database server goes away', () => {
  let cluster: PostgresCluster | undefined;
  let app: TestApp | undefined;
  afterAll(async () => {
    await app?.close();
    await cluster?.stop();
  }, 30_000);

  test('LISTEN is tried again until the server is back, and the cache starts empty', async () => {
    cluster = await startPostgres();
    app = await buildTestApp({ ...LONG_TTL, DATABASE_URL: cluster.url });
    const server = app;
    await within(5000, () => listening(server));
    const tenant = await server.tenant();
    expect(await status(server, tenant.api_key)).toBe(200);
    expect(server.deps.keys.size).toBe(1);

    cluster.kill('SIGKILL');
    await within(2000, () => !listening(server));
    // Long enough for several attempts to be refused.
    await Bun.sleep(2500);
    expect(listening(server)).toBe(false);
    await cluster.start();
    await within(5000, () => listening(server));
    expect(server.deps.keys.size).toBe(0);
  }, 60_000);
});

/** The database, with a subscription that is up at once and never hears anything. */
function listeningDatabase(database: DatabaseHandle): DatabaseHandle {
  return {
    ...database,
    listen(_channel, handlers) {
      handlers.onState(true);
      handlers.onHeard(Number.POSITIVE_INFINITY);
      return { close: async () => {} };
    },
  };
}

/** The database, with a subscription that never gets through. */
function silentDatabase(database: DatabaseHandle): DatabaseHandle {
  return { ...database, listen: () => ({ close: async () => {} }) };
}
