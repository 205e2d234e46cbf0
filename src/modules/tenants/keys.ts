import { and, eq, gt, isNull, or, sql } from 'drizzle-orm';
import { apiKeys, tenants } from '../../db/schema';
import type { Database } from '../../db/types';
import { hashKey, safeEqual } from '../../lib/keys';

export interface ResolvedTenant {
  id: string;
  name: string;
  disabled: boolean;
  /** Per-tenant rate-limit overrides (requests per window); absent: the configured default. */
  limits: { write?: number; read?: number };
}

/** Keys of the tenant settings that hold rate-limit overrides. */
export const LIMIT_SETTINGS = {
  write: 'rate_limit_write_per_minute',
  read: 'rate_limit_read_per_minute',
} as const;

function limitsOf(settings: Record<string, unknown>): ResolvedTenant['limits'] {
  const pick = (k: string) =>
    typeof settings[k] === 'number' ? (settings[k] as number) : undefined;
  return { write: pick(LIMIT_SETTINGS.write), read: pick(LIMIT_SETTINGS.read) };
}

interface CacheEntry {
  tenant: ResolvedTenant;
  keyHash: string;
  until: number;
}

/** Most keys kept in memory; beyond it the oldest entry is dropped. */
const MAX_CACHED_KEYS = 10_000;

/**
 * Looks up the tenant of an API key by its hash, with a short in-process cache. Rotation and
 * disabling call `forgetTenant`, so they take effect at once in this process; other processes
 * see the change when their entry expires (AUTH_CACHE_TTL_MS).
 */
export class KeyResolver {
  private readonly cache = new Map<string, CacheEntry>();

  constructor(
    private readonly db: Database,
    private readonly ttlMs: number,
  ) {}

  async resolve(key: string): Promise<ResolvedTenant | null> {
    const hash = hashKey(key);
    const now = Date.now();
    const hit = this.cache.get(hash);
    if (hit && hit.until > now && safeEqual(hit.keyHash, hash)) return hit.tenant;
    if (hit) this.cache.delete(hash);

    const [row] = await this.db
      .select({
        id: tenants.id,
        name: tenants.name,
        disabled: tenants.disabled,
        settings: tenants.settings,
        keyHash: apiKeys.keyHash,
        expiresAt: apiKeys.expiresAt,
      })
      .from(apiKeys)
      .innerJoin(tenants, eq(tenants.id, apiKeys.tenantId))
      .where(
        and(
          eq(apiKeys.keyHash, hash),
          or(isNull(apiKeys.expiresAt), gt(apiKeys.expiresAt, sql`now()`)),
        ),
      );
    // The index lookup is by hash; the final comparison is constant-time all the same.
    if (!row || !safeEqual(row.keyHash, hash)) return null;
    const tenant: ResolvedTenant = {
      id: row.id,
      name: row.name,
      disabled: row.disabled,
      limits: limitsOf(row.settings),
    };
    if (this.ttlMs > 0) {
      const until = Math.min(
        now + this.ttlMs,
        row.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY,
      );
      if (this.cache.size >= MAX_CACHED_KEYS) {
        this.cache.delete(this.cache.keys().next().value!);
      }
      this.cache.set(hash, { tenant, keyHash: hash, until });
    }
    return tenant;
  }

  /** Drops every cached key of a tenant (after rotation, disabling or deletion). */
  forgetTenant(tenantId: string): void {
    for (const [hash, entry] of this.cache) {
      if (entry.tenant.id === tenantId) this.cache.delete(hash);
    }
  }
}
