// The key cache of a fleet: every instance caches resolved API keys for AUTH_CACHE_TTL_MS (ten
// minutes here), and a key rotated or a tenant disabled through one instance must be refused by
// every instance within a second (PostgreSQL LISTEN/NOTIFY), not when the cache expires.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { BUILD_TIMEOUT_MS, killAllServers, type ServerProcess } from '../../harness/binary';
import { faultBinary, send } from '../faults/support';
import { ADMIN_KEY, type Fleet, metric, startFleet } from './support';

const CACHE_TTL_MS = 600_000;
/** The promise: a change made on one instance takes effect on every instance within this. */
const PROPAGATION_MS = 1000;
const POLL_MS = 50;
/** Longer than the cache's fallback bound while LISTEN is unconfirmed (UNCONFIRMED_TTL_MS). */
const CACHED_FOR_MS = 1500;

let fleet: Fleet;

beforeAll(async () => {
  await faultBinary();
  fleet = await startFleet('keys', { AUTH_CACHE_TTL_MS: String(CACHE_TTL_MS) });
  // Every instance must be listening before a change can reach it.
  const deadline = performance.now() + 10_000;
  for (const server of fleet.instances) {
    while ((await metric(server, 'threadstore_key_listener_up')) !== 1) {
      if (performance.now() > deadline) throw new Error('LISTEN not up on every instance');
      await Bun.sleep(50);
    }
  }
}, BUILD_TIMEOUT_MS);

afterAll(async () => {
  await fleet?.close();
  await killAllServers();
});

const status = async (server: ServerProcess, key: string) =>
  (await send(server, 'GET', '/v1/messages?limit=1', key)).status;

/** Reads the key on every instance, so each holds it in its cache. */
async function warm(key: string): Promise<void> {
  for (const server of fleet.instances) expect(await status(server, key)).toBe(200);
  for (const server of fleet.instances) {
    expect(await metric(server, 'threadstore_key_cache_entries')).toBeGreaterThanOrEqual(1);
  }
}

/**
 * Polls every instance with `key` every POLL_MS from `since` until each answers `want`; returns
 * how long each took (ms after `since`), or null for one that never did within 3 s.
 */
async function untilEach(key: string, want: number, since: number): Promise<(number | null)[]> {
  return Promise.all(
    fleet.instances.map(async (server) => {
      while (performance.now() - since < 3000) {
        if ((await status(server, key)) === want) return Math.round(performance.now() - since);
        await Bun.sleep(POLL_MS);
      }
      return null;
    }),
  );
}

const withinPromise = (times: (number | null)[]) =>
  times.every((t) => t !== null && t <= PROPAGATION_MS);

describe('the key cache across three instances', () => {
  test('a change made behind the service’s back is not seen: the caches are really warm', async () => {
    const tenant = await fleet.createTenant();
    await warm(tenant.key);
    // Disabled in the database without the notification an instance would send.
    await fleet.sql`update tenants set disabled = true where id = ${tenant.id}`;
    try {
      const until = performance.now() + CACHED_FOR_MS;
      while (performance.now() < until) {
        for (const server of fleet.instances) expect(await status(server, tenant.key)).toBe(200);
        await Bun.sleep(POLL_MS);
      }
    } finally {
      await fleet.sql`update tenants set disabled = false where id = ${tenant.id}`;
    }
  }, 20_000);

  test('a key rotated on one instance is refused by every instance within a second', async () => {
    const tenant = await fleet.createTenant();
    await warm(tenant.key);
    const [a] = fleet.instances;
    const rotated = await send(a!, 'POST', `/v1/admin/tenants/${tenant.id}/keys`, ADMIN_KEY, {});
    expect(rotated.status).toBe(201);
    const since = performance.now();
    const times = await untilEach(tenant.key, 401, since);
    console.info(`fleet key cache: rotation refused after ${times.join(', ')} ms`);
    expect(withinPromise(times)).toBe(true);
    // The new key works everywhere.
    for (const server of fleet.instances) {
      expect(await status(server, rotated.body.api_key)).toBe(200);
    }
  }, 20_000);

  test('a tenant disabled on one instance is refused by every instance within a second, and enabled again likewise', async () => {
    const tenant = await fleet.createTenant();
    await warm(tenant.key);
    const [a] = fleet.instances;
    const disabled = await send(a!, 'PATCH', `/v1/admin/tenants/${tenant.id}`, ADMIN_KEY, {
      disabled: true,
    });
    expect(disabled.status).toBe(200);
    const disabledTimes = await untilEach(tenant.key, 403, performance.now());
    console.info(`fleet key cache: disabled tenant refused after ${disabledTimes.join(', ')} ms`);
    expect(withinPromise(disabledTimes)).toBe(true);

    const enabled = await send(a!, 'PATCH', `/v1/admin/tenants/${tenant.id}`, ADMIN_KEY, {
      disabled: false,
    });
    expect(enabled.status).toBe(200);
    const enabledTimes = await untilEach(tenant.key, 200, performance.now());
    expect(withinPromise(enabledTimes)).toBe(true);
  }, 20_000);
});
