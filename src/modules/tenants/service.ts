import { and, asc, eq, gt, isNull, or, type SQL, sql } from 'drizzle-orm';
import { apiKeys, type TenantRow, tenants } from '../../db/schema';
import type { Database } from '../../db/types';
import type { CursorCodec } from '../../lib/cursor';
import { notFound } from '../../lib/errors';
import { generateTenantKey } from '../../lib/keys';
import { LIMIT_SETTINGS } from './keys';

/** Cursors of the admin listing are bound to this pseudo-tenant. */
const ADMIN_SCOPE_TENANT = 'admin';

export interface TenantView {
  id: string;
  name: string;
  disabled: boolean;
  rate_limit_write_per_minute: number | null;
  rate_limit_read_per_minute: number | null;
  api_key_prefix: string | null;
  created_at: string;
  updated_at: string;
}

function toView(row: TenantRow, prefix: string | null): TenantView {
  const limit = (k: string) =>
    typeof row.settings[k] === 'number' ? (row.settings[k] as number) : null;
  return {
    id: row.id,
    name: row.name,
    disabled: row.disabled,
    rate_limit_write_per_minute: limit(LIMIT_SETTINGS.write),
    rate_limit_read_per_minute: limit(LIMIT_SETTINGS.read),
    api_key_prefix: prefix,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

/** Creates a tenant and its first key; the key is returned once and stored only hashed. */
export async function createTenant(db: Database, name: string) {
  const key = generateTenantKey();
  const id = Bun.randomUUIDv7();
  const row = await db.transaction(async (tx) => {
    const [tenant] = await tx.insert(tenants).values({ id, name }).returning();
    await tx
      .insert(apiKeys)
      .values({ id: Bun.randomUUIDv7(), tenantId: id, keyHash: key.hash, keyPrefix: key.prefix });
    return tenant!;
  });
  return {
    id: row.id,
    name: row.name,
    api_key: key.key,
    api_key_prefix: key.prefix,
    created_at: row.createdAt.toISOString(),
  };
}

/**
 * The current (non-expiring) key prefix of the tenant. Written as literal SQL: drizzle leaves
 * column names unqualified in a single-table select, which inside a subquery would bind to the
 * inner table.
 */
const currentPrefix = sql<string | null>`(
  select k.key_prefix from api_keys k
  where k.tenant_id = "tenants"."id" and k.expires_at is null
  order by k.created_at desc limit 1)`;

export async function getTenant(db: Database, id: string): Promise<TenantView> {
  const [row] = await db
    .select({ tenant: tenants, prefix: currentPrefix })
    .from(tenants)
    .where(eq(tenants.id, id));
  if (!row) throw notFound('Tenant');
  return toView(row.tenant, row.prefix);
}

export async function listTenants(
  db: Database,
  cursors: CursorCodec,
  q: { limit: number; cursor?: string },
) {
  const after = q.cursor ? cursors.decode(ADMIN_SCOPE_TENANT, 'tenants', q.cursor) : undefined;
  const rows = await db
    .select({ tenant: tenants, prefix: currentPrefix })
    .from(tenants)
    .where(after ? gt(tenants.id, after.i) : undefined)
    .orderBy(asc(tenants.id))
    .limit(q.limit + 1);
  const items = rows.slice(0, q.limit);
  const last = items[items.length - 1];
  return {
    tenants: items.map((r) => toView(r.tenant, r.prefix)),
    next_cursor:
      rows.length > q.limit && last
        ? cursors.encode(ADMIN_SCOPE_TENANT, 'tenants', { k: '', i: last.tenant.id })
        : null,
  };
}

export interface TenantPatch {
  name?: string;
  disabled?: boolean;
  rate_limit_write_per_minute?: number | null;
  rate_limit_read_per_minute?: number | null;
}

export async function updateTenant(
  db: Database,
  id: string,
  patch: TenantPatch,
): Promise<TenantView> {
  // Overrides live in the settings document: numbers are merged in, nulls removed.
  const set: Record<string, number> = {};
  const unset: string[] = [];
  for (const [field, key] of [
    ['rate_limit_write_per_minute', LIMIT_SETTINGS.write],
    ['rate_limit_read_per_minute', LIMIT_SETTINGS.read],
  ] as const) {
    const value = patch[field];
    if (value === null) unset.push(key);
    else if (value !== undefined) set[key] = value;
  }
  const [row] = await db
    .update(tenants)
    .set({
      name: patch.name,
      disabled: patch.disabled,
      settings: unset.reduce<SQL>(
        (expr, key) => sql`(${expr} - ${key}::text)`,
        sql`(${tenants.settings} || ${JSON.stringify(set)}::jsonb)`,
      ),
      updatedAt: sql`now()`,
    })
    .where(eq(tenants.id, id))
    .returning({ id: tenants.id });
  if (!row) throw notFound('Tenant');
  return getTenant(db, id);
}

/**
 * Issues a new key. Every key still working stops at once, or after `graceSeconds` (never later
 * than it would have anyway). Keys that expired before now are removed.
 */
export async function rotateKey(db: Database, tenantId: string, graceSeconds: number) {
  const key = generateTenantKey();
  return db.transaction(async (tx) => {
    const [tenant] = await tx
      .select({ id: tenants.id })
      .from(tenants)
      .where(eq(tenants.id, tenantId))
      .for('update');
    if (!tenant) throw notFound('Tenant');
    const expiresAt = sql`now() + make_interval(secs => ${graceSeconds})`;
    const [expiry] = await tx
      .update(apiKeys)
      .set({ expiresAt })
      .where(
        and(
          eq(apiKeys.tenantId, tenantId),
          or(isNull(apiKeys.expiresAt), gt(apiKeys.expiresAt, expiresAt)),
        ),
      )
      .returning({ expiresAt: apiKeys.expiresAt });
    await tx
      .delete(apiKeys)
      .where(and(eq(apiKeys.tenantId, tenantId), sql`${apiKeys.expiresAt} < now()`));
    await tx
      .insert(apiKeys)
      .values({ id: Bun.randomUUIDv7(), tenantId, keyHash: key.hash, keyPrefix: key.prefix });
    return {
      api_key: key.key,
      api_key_prefix: key.prefix,
      previous_key_expires_at: expiry?.expiresAt?.toISOString() ?? null,
    };
  });
}
