import QuickLRU from '@alloc/quick-lru';
import { and, eq, gt, isNull, or, sql } from 'drizzle-orm';
import { apiKeys, tenants } from '../db/schema';
import type { Subscription } from '../db/listener';
import type { Database, DatabaseHandle } from '../db/types';
import { hashKey, isTenantKeyShaped, safeEqual } from './keys';

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
  /** When it was read from the database. */
  at: number;
  until: number;
}

/** The part of a cached entry's life at whose start it is read again in the background. */
const REFRESH_AHEAD = 0.2;

/** After this long a background read of a key that has not come back is no longer waited for. */
const REFRESH_WAIT_MS = 1000;

/** Most keys kept in memory; beyond it the oldest entry is dropped. */
const MAX_CACHED_KEYS = 10_000;

/**
 * How long a well-formed key that no tenant has is answered as unknown without a lookup. Short,
 * because a key can appear without a notification reaching this instance (a restore, or a
 * notification lost while the listener was down); long enough that a guesser repeating a key
 * costs the database one lookup per this interval at most.
 */
export const UNKNOWN_KEY_TTL_MS = 2000;

/** Most unknown keys remembered; beyond it the least recently used is forgotten. */
const MAX_UNKNOWN_KEYS = 10_000;

/**
 * The NOTIFY channel of key and tenant changes; the payload is the tenant id. Every instance
 * listens on it and drops what it cached of that tenant.
 */
export const KEYS_CHANNEL = 'threadstore_keys';

/**
 * How long a cached key is trusted while the LISTEN connection is down (or not yet up), since a
 * change made meanwhile goes unheard. Revocation then still takes effect within this bound.
 */
export const UNCONFIRMED_TTL_MS = 1000;

/**
 * Announces a change to a tenant or its keys to every instance. Called inside the transaction
 * making the change: PostgreSQL delivers the notification on commit, and never for a rollback,
 * so no instance hears of a change before it is visible or misses one that committed.
 */
export async function notifyKeyChange(db: Database, tenantId: string): Promise<void> {
  await db.execute(sql`select pg_notify(${KEYS_CHANNEL}, ${tenantId})`);
}

/** The LISTEN connection as health and metrics report it. */
export interface ListenerState {
  listening: boolean;
  /** When it last came up or went down (null: not connected yet). */
  since: Date | null;
  /** Every change committed before this time has been heard (ms since the epoch). */
  heardAt: number;
}

/**
 * Looks up the tenant of an API key by its hash, with an in-process cache of AUTH_CACHE_TTL_MS.
 * Rotation, disabling and deletion call `forgetTenant` in the process that handles them and
 * notify KEYS_CHANNEL in their transaction; every process listens (`follow`) and forgets that
 * tenant as the notification arrives. An entry is trusted for AUTH_CACHE_TTL_MS only while the
 * listener confirms it has heard everything up to less than UNCONFIRMED_TTL_MS ago; otherwise
 * (connection down, or silent) for UNCONFIRMED_TTL_MS after it was read. When the connection
 * comes back the whole cache is dropped, as notifications sent meanwhile are lost.
 */
export class KeyResolver {
  private readonly cache = new Map<string, CacheEntry>();
  /** Hashes of well-formed keys found unknown lately (see UNKNOWN_KEY_TTL_MS). */
  private readonly unknown = new QuickLRU<string, true>({
    maxSize: MAX_UNKNOWN_KEYS,
    maxAge: UNKNOWN_KEY_TTL_MS,
  });
  /** Background reads under way, by key hash: when each began (performance.now()). */
  private readonly refreshing = new Map<string, number>();
  private listening = false;
  private since: Date | null = null;
  private heardAt = Number.NEGATIVE_INFINITY;
  /**
   * Counts invalidations. A lookup that began before one may have read the old rows: its
   * result is returned but not cached.
   */
  private generation = 0;

  constructor(
    private readonly db: Database,
    private readonly ttlMs: number,
  ) {}

  /** Listens for key changes made by any instance; the database's `close` ends it. */
  follow(database: DatabaseHandle): Subscription {
    return database.listen(KEYS_CHANNEL, {
      onNotify: (tenantId) => this.forgetTenant(tenantId),
      onState: (listening) => {
        // Up again: whatever was announced while down went unheard.
        if (listening) this.forgetAll();
        this.listening = listening;
        this.since = new Date();
      },
      onHeard: (at) => {
        this.heardAt = Math.max(this.heardAt, at);
      },
    });
  }

  listenerState(): ListenerState {
    return { listening: this.listening, since: this.since, heardAt: this.heardAt };
  }

  /** Keys held in the cache (some possibly expired and not yet dropped). */
  get size(): number {
    return this.cache.size;
  }

  /** The tenant of a key, or null for a key that is not (or no longer) valid. */
  async resolve(key: string): Promise<ResolvedTenant | null> {
    const known = this.peek(key);
    if (known !== undefined) return known;
    return this.read(hashKey(key), this.generation);
  }

  /**
   * What can be said of a key without the database: its tenant (cached), null (malformed, or
   * found unknown within UNKNOWN_KEY_TTL_MS), or undefined when only a lookup can tell.
   */
  peek(key: string): ResolvedTenant | null | undefined {
    if (!isTenantKeyShaped(key)) return null;
    const hash = hashKey(key);
    const now = Date.now();
    const hit = this.cache.get(hash);
    if (hit && this.fresh(hit, now) && safeEqual(hit.keyHash, hash)) {
      if (this.refreshDue(hit, now)) this.refresh(hash);
      return hit.tenant;
    }
    if (hit) this.cache.delete(hash);
    if (this.unknown.has(hash)) return null;
    return undefined;
  }

  /**
   * Reads a key in use again in the background before it goes stale, so its requests never
   * wait for a lookup: when an entry simply expired, every request that came before the first
   * lookup was back sent one of its own, at 2,000 requests a second a burst of a hundred
   * queries ahead of everything else every AUTH_CACHE_TTL_MS. One such read per key at a
   * time; a failure leaves the entry to expire, and requests then read for themselves, as
   * they do for a key not cached. A read that has not come back within REFRESH_WAIT_MS (one
   * stuck on a connection to a server that went away) no longer holds the next one back.
   */
  private refresh(hash: string): void {
    const now = performance.now();
    const started = this.refreshing.get(hash);
    if (started !== undefined && now - started < REFRESH_WAIT_MS) return;
    this.refreshing.set(hash, now);
    this.read(hash, this.generation)
      .catch(() => {})
      .finally(() => {
        if (this.refreshing.get(hash) === now) this.refreshing.delete(hash);
      });
  }

  private async read(hash: string, generation: number): Promise<ResolvedTenant | null> {
    const now = Date.now();
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
    if (!row || !safeEqual(row.keyHash, hash)) {
      // Revoked or expired since it was cached (a background read finds this first).
      if (generation === this.generation) {
        this.cache.delete(hash);
        this.unknown.set(hash, true);
      }
      return null;
    }
    const tenant: ResolvedTenant = {
      id: row.id,
      name: row.name,
      disabled: row.disabled,
      limits: limitsOf(row.settings),
    };
    if (this.ttlMs > 0 && generation === this.generation) {
      const until = Math.min(
        now + this.ttlMs,
        row.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY,
      );
      // Re-inserted, so the keys read longest ago are the first dropped.
      this.cache.delete(hash);
      if (this.cache.size >= MAX_CACHED_KEYS) {
        this.cache.delete(this.cache.keys().next().value!);
      }
      this.cache.set(hash, { tenant, keyHash: hash, at: now, until });
    }
    return tenant;
  }

  /** Drops every cached key of a tenant (after rotation, disabling or deletion). */
  forgetTenant(tenantId: string): void {
    this.generation++;
    // Which unknown keys belong to the tenant cannot be told: a key just made may be among them.
    this.unknown.clear();
    for (const [hash, entry] of this.cache) {
      if (entry.tenant.id === tenantId) this.cache.delete(hash);
    }
  }

  /** Drops every cached key. */
  forgetAll(): void {
    this.generation++;
    this.cache.clear();
    this.unknown.clear();
  }

  /**
   * In the last fifth of an entry's life, by its TTL or by the listener's silence: time to read
   * it again while it is still served.
   */
  private refreshDue(entry: CacheEntry, now: number): boolean {
    if (entry.until - now < REFRESH_AHEAD * (entry.until - entry.at)) return true;
    return now - Math.max(entry.at, this.heardAt) > (1 - REFRESH_AHEAD) * UNCONFIRMED_TTL_MS;
  }

  /**
   * A change committed at T was either heard (T before heardAt) or is trusted away by
   * max(entry.at, heardAt) + UNCONFIRMED_TTL_MS, which is at most T + UNCONFIRMED_TTL_MS.
   */
  private fresh(entry: CacheEntry, now: number): boolean {
    if (entry.until <= now) return false;
    return now - Math.max(entry.at, this.heardAt) < UNCONFIRMED_TTL_MS;
  }
}
