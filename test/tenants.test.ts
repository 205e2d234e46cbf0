import { describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { rowsOf } from '../src/db/raw';
import { ADMIN_KEY, buildTestApp, sharedApp } from './support/app';

const t = await sharedApp();
const admin = { key: ADMIN_KEY };
const ping = (key: string) => t.call('GET', '/v1/messages?limit=1', { key });

describe('admin routes', () => {
  test('need the admin key: none, a wrong one or a tenant key get 401', async () => {
    const tenant = await t.tenant();
    for (const key of [null, 'wrong-admin-key-000000', tenant.api_key, `${ADMIN_KEY}x`]) {
      const res = await t.call('GET', '/v1/admin/tenants', { key });
      expect(res.status).toBe(401);
      expect(res.json.error.code).toBe('unauthorized');
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
    }
    const odd = await t.call('GET', '/v1/admin/tenants', {
      headers: { authorization: 'Basic abc' },
    });
    expect(odd.status).toBe(401);
  });

  test('create a tenant: 201 with a ts_ key of at least 32 random bytes, shown once', async () => {
    const res = await t.call('POST', '/v1/admin/tenants', { ...admin, body: { name: 'Acme' } });
    expect(res.status).toBe(201);
    expect(res.json).toMatchObject({ name: 'Acme' });
    expect(res.json.api_key).toMatch(/^ts_[A-Za-z0-9_-]{43,}$/);
    expect(res.json.api_key.startsWith(res.json.api_key_prefix)).toBe(true);
    const listed = await t.call('GET', `/v1/admin/tenants/${res.json.id}`, admin);
    expect(listed.json.api_key_prefix).toBe(res.json.api_key_prefix);
    expect(listed.text).not.toContain(res.json.api_key);
  });

  test('stores only the SHA-256 of keys, never the key itself', async () => {
    const tenant = await t.tenant();
    const rows = rowsOf<{ key_hash: string }>(
      await t.db.execute(sql`select key_hash from api_keys where tenant_id = ${tenant.id}`),
    );
    expect(rows.length).toBe(1);
    const expected = new Bun.CryptoHasher('sha256').update(tenant.api_key).digest('hex');
    expect(rows[0]!.key_hash).toBe(expected);
    const dump = JSON.stringify(
      rowsOf(
        await t.db.execute(
          sql`select t.*, k.* from tenants t join api_keys k on k.tenant_id = t.id where t.id = ${tenant.id}`,
        ),
      ),
    );
    expect(dump).not.toContain(tenant.api_key.slice(10));
  });

  test('never logs keys', async () => {
    const tenant = await t.tenant();
    await ping(tenant.api_key);
    await t.call('POST', `/v1/admin/tenants/${tenant.id}/keys`, admin);
    await Bun.sleep(5);
    const logs = t.logs.raw.join('\n');
    expect(logs).not.toContain(tenant.api_key);
    expect(logs).not.toContain(ADMIN_KEY);
  });

  test('validates tenant input', async () => {
    for (const body of [
      {},
      { name: '' },
      { name: 'x'.repeat(201) },
      { name: 'a', extra: 1 },
      { name: 5 },
    ]) {
      const res = await t.call('POST', '/v1/admin/tenants', { ...admin, body });
      expect(res.status).toBe(422);
    }
    const res = await t.call('PATCH', `/v1/admin/tenants/${crypto.randomUUID()}`, {
      ...admin,
      body: { disabled: true },
    });
    expect(res.status).toBe(404);
    const tenant = await t.tenant();
    for (const body of [{ disabled: 'true' }, { disabled: 1 }, { disabled: null }, 'str']) {
      const res = await t.call('PATCH', `/v1/admin/tenants/${tenant.id}`, { ...admin, body });
      expect(res.status).toBe(422);
    }
    expect((await ping(tenant.api_key)).status).toBe(200);
    const empty = await t.call('PATCH', `/v1/admin/tenants/${crypto.randomUUID()}`, {
      ...admin,
      body: {},
    });
    expect(empty.status).toBe(422);
  });

  test('lists tenants with keyset pagination', async () => {
    const created = new Set<string>();
    for (let i = 0; i < 3; i++) created.add((await t.tenant(`page-${i}`)).id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const q: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
      const res = await t.call('GET', `/v1/admin/tenants?limit=2${q}`, admin);
      expect(res.status).toBe(200);
      seen.push(...res.json.tenants.map((x: { id: string }) => x.id));
      cursor = res.json.next_cursor;
    } while (cursor);
    expect(new Set(seen).size).toBe(seen.length);
    for (const id of created) expect(seen).toContain(id);
  });
});

describe('key rotation', () => {
  test('the old key gets 401 at once; the new one works', async () => {
    const tenant = await t.tenant();
    expect((await ping(tenant.api_key)).status).toBe(200); // warms the key cache
    const res = await t.call('POST', `/v1/admin/tenants/${tenant.id}/keys`, admin);
    expect(res.status).toBe(201);
    expect(res.json.api_key).not.toBe(tenant.api_key);
    expect((await ping(tenant.api_key)).status).toBe(401);
    expect((await ping(res.json.api_key)).status).toBe(200);
  });

  test('with a grace period both keys work until it ends', async () => {
    const tenant = await t.tenant();
    const res = await t.call('POST', `/v1/admin/tenants/${tenant.id}/keys`, {
      ...admin,
      body: { grace_seconds: 1 },
    });
    expect(res.status).toBe(201);
    expect(Date.parse(res.json.previous_key_expires_at) - Date.now()).toBeLessThanOrEqual(1000);
    expect((await ping(tenant.api_key)).status).toBe(200);
    expect((await ping(res.json.api_key)).status).toBe(200);
    await Bun.sleep(1100);
    expect((await ping(tenant.api_key)).status).toBe(401);
    expect((await ping(res.json.api_key)).status).toBe(200);
  });

  test('a second rotation never extends an earlier grace period', async () => {
    const tenant = await t.tenant();
    const first = await t.call('POST', `/v1/admin/tenants/${tenant.id}/keys`, {
      ...admin,
      body: { grace_seconds: 1 },
    });
    const second = await t.call('POST', `/v1/admin/tenants/${tenant.id}/keys`, {
      ...admin,
      body: { grace_seconds: 3600 },
    });
    expect(second.status).toBe(201);
    await Bun.sleep(1100);
    expect((await ping(tenant.api_key)).status).toBe(401);
    expect((await ping(first.json.api_key)).status).toBe(200);
    expect((await ping(second.json.api_key)).status).toBe(200);
  });

  test('rejects grace periods out of range and unknown tenants', async () => {
    const tenant = await t.tenant();
    for (const grace_seconds of [-1, 7 * 24 * 3600 + 1, 1.5, '10', null, true]) {
      const res = await t.call('POST', `/v1/admin/tenants/${tenant.id}/keys`, {
        ...admin,
        body: { grace_seconds },
      });
      expect(res.status).toBe(422);
    }
    for (const body of ['str', [1], 5, null]) {
      const res = await t.call('POST', `/v1/admin/tenants/${tenant.id}/keys`, { ...admin, body });
      expect(res.status).toBe(422);
    }
    const missing = await t.call('POST', `/v1/admin/tenants/${crypto.randomUUID()}/keys`, admin);
    expect(missing.status).toBe(404);
    expect((await ping(tenant.api_key)).status).toBe(200);
  });
});

describe('disabling a tenant', () => {
  test('its key gets 403 at once, and works again when re-enabled', async () => {
    const tenant = await t.tenant();
    expect((await ping(tenant.api_key)).status).toBe(200);
    const off = await t.call('PATCH', `/v1/admin/tenants/${tenant.id}`, {
      ...admin,
      body: { disabled: true },
    });
    expect(off.status).toBe(200);
    expect(off.json.disabled).toBe(true);
    const denied = await ping(tenant.api_key);
    expect(denied.status).toBe(403);
    expect(denied.json.error.code).toBe('forbidden');
    const on = await t.call('PATCH', `/v1/admin/tenants/${tenant.id}`, {
      ...admin,
      body: { disabled: false },
    });
    expect(on.json.disabled).toBe(false);
    expect((await ping(tenant.api_key)).status).toBe(200);
  });
});

describe('tenant authentication', () => {
  test('a missing, malformed or unknown key gets 401 on every tenant route', async () => {
    const routes: [string, string][] = [
      ['GET', '/v1/messages'],
      ['POST', '/v1/messages'],
      ['POST', '/v1/messages/batch'],
      ['GET', `/v1/messages/${crypto.randomUUID()}`],
      ['DELETE', `/v1/messages/${crypto.randomUUID()}`],
      ['GET', '/v1/conversations'],
      ['GET', '/v1/conversations/c'],
      ['DELETE', '/v1/conversations/c'],
    ];
    for (const [method, path] of routes) {
      for (const key of [null, 'ts_unknown', ADMIN_KEY]) {
        const res = await t.call(method, path, { key, body: method === 'POST' ? {} : undefined });
        expect({ method, path, status: res.status }).toEqual({ method, path, status: 401 });
      }
    }
  });
});

describe('retention policy', () => {
  test('is set at creation, shown, changed and cleared; purge may not come before archive', async () => {
    const created = await t.call('POST', '/v1/admin/tenants', {
      ...admin,
      body: { name: 'policy', archive_after_days: 30, purge_after_days: 365 },
    });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ archive_after_days: 30, purge_after_days: 365 });
    const id = created.json.id;
    const patch = (body: unknown) => t.call('PATCH', `/v1/admin/tenants/${id}`, { ...admin, body });
    expect((await patch({ purge_after_days: 10 })).status).toBe(422);
    expect((await patch({ archive_after_days: 400 })).status).toBe(422);
    expect((await patch({ purge_after_days: 30 })).json.purge_after_days).toBe(30);
    const cleared = await patch({ archive_after_days: null });
    expect(cleared.json).toMatchObject({ archive_after_days: null, purge_after_days: 30 });
    const listed = await t.call('GET', `/v1/admin/tenants/${id}`, admin);
    expect(listed.json).toMatchObject({ archive_after_days: null, purge_after_days: 30 });
    for (const bad of [0, -1, 1.5, '30', 36_501]) {
      expect((await patch({ archive_after_days: bad })).status).toBe(422);
    }
    const wrongOrder = await t.call('POST', '/v1/admin/tenants', {
      ...admin,
      body: { name: 'x', archive_after_days: 30, purge_after_days: 7 },
    });
    expect(wrongOrder.status).toBe(422);
  });

  test('new tenants take the configured defaults unless they say otherwise', async () => {
    const withDefaults = await buildTestApp({
      RETENTION_ARCHIVE_AFTER_DAYS: '90',
      RETENTION_PURGE_AFTER_DAYS: '400',
    });
    try {
      const plain = await withDefaults.call('POST', '/v1/admin/tenants', {
        ...admin,
        body: { name: 'defaults' },
      });
      expect(plain.json).toMatchObject({ archive_after_days: 90, purge_after_days: 400 });
      const own = await withDefaults.call('POST', '/v1/admin/tenants', {
        ...admin,
        body: { name: 'own', archive_after_days: null },
      });
      expect(own.json).toMatchObject({ archive_after_days: null, purge_after_days: 400 });
    } finally {
      await withDefaults.close();
    }
  });
});
