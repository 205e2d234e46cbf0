import { and, asc, eq, gt, isNull, or, sql } from 'drizzle-orm';
import { apiKeys, type TenantRow, tenants } from '../../db/schema';
import type { Database } from '../../db/types';
import type { CursorCodec } from '../../lib/cursor';
import { errors } from '../../lib/errors';
import { generateTenantKey } from '../../auth/keys';
import { LIMIT_SETTINGS, notifyKeyChange } from '../../auth/resolver';
import type { TenantView } from './model';

/** Cursors of the admin listing are bound to this pseudo-tenant. */
const ADMIN_SCOPE_TENANT = 'admin';

/**
 * Per-tenant numbers kept in the settings document, under the same names as in the API; absent
 * means the default (rate limits) or never (retention).
 */
export const NUMERIC_SETTINGS = [
  LIMIT_SETTINGS.write,
  LIMIT_SETTINGS.read,
  'archive_after_days',
  'purge_after_days',
] as const;
export type NumericSetting = (typeof NUMERIC_SETTINGS)[number];
export type TenantSettings = Partial<Record<NumericSetting, number | null>>;

function settingOf(settings: Record<string, unknown>, key: NumericSetting): number | null {
  return typeof settings[key] === 'number' ? (settings[key] as number) : null;
}

/** Purge before archive would delete what the policy says to keep archived: refused. */
function checkRetention(archive: number | null, purge: number | null): void {
  if (archive !== null && purge !== null && purge < archive) {
    throw errors.validationFailed('purge_after_days must be at least archive_after_days', [
      { in: 'body', path: '/purge_after_days', message: `At least ${archive}` },
    ]);
  }
}

function toView(row: TenantRow, prefix: string | null): TenantView {
  return {
    id: row.id,
    name: row.name,
    disabled: row.disabled,
    rate_limit_write_per_minute: settingOf(row.settings, LIMIT_SETTINGS.write),
    rate_limit_read_per_minute: settingOf(row.settings, LIMIT_SETTINGS.read),
    archive_after_days: settingOf(row.settings, 'archive_after_days'),
    purge_after_days: settingOf(row.settings, 'purge_after_days'),
    api_key_prefix: prefix,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}

/**
 * Creates a tenant and its first key; the key is returned once and stored only hashed. Settings
 * not given take `defaults` (the configured retention policy for new tenants).
 */
export async function createTenant(
  db: Database,
  input: { name: string } & TenantSettings,
  defaults: TenantSettings,
) {
  const settings: Record<string, number> = {};
  for (const key of NUMERIC_SETTINGS) {
    const value = input[key] === undefined ? defaults[key] : input[key];
    if (typeof value === 'number') settings[key] = value;
  }
  checkRetention(settings.archive_after_days ?? null, settings.purge_after_days ?? null);
  const key = generateTenantKey();
  const id = Bun.randomUUIDv7();
  const row = await db.transaction(async (tx) => {
    const [tenant] = await tx
      .insert(tenants)
      .values({ id, name: input.name, settings })
      .returning();
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
    archive_after_days: settingOf(row.settings, 'archive_after_days'),
    purge_after_days: settingOf(row.settings, 'purge_after_days'),
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
  if (!row) throw errors.notFound('Tenant not found');
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

export interface TenantPatch extends TenantSettings {
  name?: string;
  disabled?: boolean;
}

export async function updateTenant(
  db: Database,
  id: string,
  patch: TenantPatch,
): Promise<TenantView> {
  await db.transaction(async (tx) => {
    const [current] = await tx
      .select({ settings: tenants.settings })
      .from(tenants)
      .where(eq(tenants.id, id))
      .for('update');
    if (!current) throw errors.notFound('Tenant not found');
    // Numbers are merged into the settings document, nulls removed.
    const settings: Record<string, unknown> = { ...current.settings };
    for (const key of NUMERIC_SETTINGS) {
      const value = patch[key];
      if (value === null) delete settings[key];
      else if (value !== undefined) settings[key] = value;
    }
    checkRetention(
      settingOf(settings, 'archive_after_days'),
      settingOf(settings, 'purge_after_days'),
    );
    await tx
      .update(tenants)
      .set({ name: patch.name, disabled: patch.disabled, settings, updatedAt: sql`now()` })
      .where(eq(tenants.id, id));
    // Cached keys carry the name, the disabled flag and the rate limits.
    await notifyKeyChange(tx, id);
  });
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
    if (!tenant) throw errors.notFound('Tenant not found');
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
    await notifyKeyChange(tx, tenantId);
    return {
      api_key: key.key,
      api_key_prefix: key.prefix,
      previous_key_expires_at: expiry?.expiresAt?.toISOString() ?? null,
    };
  });
}
