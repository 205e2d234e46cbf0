import { Elysia } from 'elysia';
import type { Context as RateLimitStore } from 'elysia-rate-limit';
import type { Config } from '../config';
import { clientIp, parseTrustProxy } from '../lib/client-ip';
import { AppError } from '../lib/errors';
import { pathOf } from '../lib/path';
import { MCP_PATH } from '../modules/mcp/path';
import { bearerToken } from '../lib/keys';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import type { KeyResolver, ResolvedTenant } from '../modules/tenants/keys';
import { MemoryRateLimitStore } from './rate-limit-memory';
import { requestState } from './request-id';

/** Which budget a request draws on. */
export type Budget = 'write' | 'read' | 'admin';

/** Keys held by the in-process store; beyond this the least recently used is forgotten. */
const STORE_MAX_KEYS = 100_000;
const WRITE_METHODS = new Set(['POST', 'PATCH', 'PUT', 'DELETE']);
const OPERATOR_PATHS = new Set(['/livez', '/readyz', '/metrics', '/openapi.json', '/docs']);
/** At most one warning per interval about a failing counter store, however many requests fail. */
const STORE_ERROR_LOG_INTERVAL_MS = 1000;
/** Retry-After of a 503 while the counter store fails (RATE_LIMIT_ON_STORE_ERROR=deny). */
const STORE_ERROR_RETRY_AFTER_SECONDS = '1';

/** Admin routes and probes have a budget of their own, so tenant traffic never starves them. */
export function budgetOf(method: string, path: string): Budget {
  if (OPERATOR_PATHS.has(path) || path.startsWith('/docs/') || path.startsWith('/v1/admin')) {
    return 'admin';
  }
  // Searches are POSTs (the query is a body) but read nothing into the store.
  if (path === '/v1/search') return 'read';
  return WRITE_METHODS.has(method) ? 'write' : 'read';
}

export interface RateLimitOptions {
  config: Config;
  keys: KeyResolver;
  logger: Logger;
  metrics: Metrics;
  /** Counter store shared by the fleet (Redis); in process (MemoryRateLimitStore) when null. */
  rateLimitStore?: RateLimitStore | null;
}

/**
 * Counts every request once, first thing (before parsing, validation and authentication), so
 * that failures cannot refund budget. elysia-rate-limit's own hook runs after validation and
 * refunds failed requests, so its store interface is used here from an onRequest hook
 * instead. The key is the tenant of a valid API key, and the client IP otherwise: guessing keys
 * spends the guesser's own budget. A window starts at a key's first request. Every response
 * carries RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (seconds to the window's
 * end); a 429 carries Retry-After with the same number.
 *
 * When the store fails (Redis down or slower than REDIS_TIMEOUT_MS) the request is let through
 * uncounted, or refused with 503 rate_limit_unavailable, per RATE_LIMIT_ON_STORE_ERROR; the
 * failure is counted in /metrics and logged at most once a second.
 */
export function rateLimit({ config, keys, logger, metrics, rateLimitStore }: RateLimitOptions) {
  const counters = rateLimitStore ?? new MemoryRateLimitStore(STORE_MAX_KEYS);
  const windowMs = config.RATE_LIMIT_WINDOW_MS;
  counters.init({ duration: windowMs } as Parameters<RateLimitStore['init']>[0]);
  const trust = parseTrustProxy(config.TRUST_PROXY);
  const defaults: Record<Budget, number> = {
    write: config.RATE_LIMIT_WRITE_PER_MINUTE,
    read: config.RATE_LIMIT_READ_PER_MINUTE,
    admin: config.RATE_LIMIT_ADMIN_PER_MINUTE,
  };
  const deny = config.RATE_LIMIT_ON_STORE_ERROR === 'deny';
  let lastWarnAt = 0;
  let unlogged = 0;
  const storeFailed = (err: unknown, requestId: string, budget: Budget) => {
    metrics.rateLimitStoreError();
    const now = Date.now();
    if (now - lastWarnAt >= STORE_ERROR_LOG_INTERVAL_MS) {
      logger.warn(
        {
          request_id: requestId,
          budget,
          err,
          // Failures since the last warning that were not logged one by one.
          unlogged,
        },
        deny
          ? 'rate-limit store failed; request refused with 503'
          : 'rate-limit store failed; request allowed uncounted',
      );
      lastWarnAt = now;
      unlogged = 0;
    } else {
      unlogged++;
    }
    if (deny) {
      throw new AppError(
        503,
        'rate_limit_unavailable',
        'Rate limits cannot be checked right now; retry shortly',
        undefined,
        { 'retry-after': STORE_ERROR_RETRY_AFTER_SECONDS },
      );
    }
  };

  /** Counts one request of `budget` against `key`; throws 429 (or 503 per the store policy). */
  async function charge(
    set: { headers: Record<string, unknown> },
    requestId: string,
    budget: Budget,
    key: string,
    limit: number,
  ): Promise<void> {
    let counted: { count: number; nextReset: Date };
    try {
      counted = await counters.increment(key, windowMs, Date.now());
    } catch (err) {
      return storeFailed(err, requestId, budget);
    }
    const { count, nextReset } = counted;
    const resetSeconds = Math.max(0, Math.ceil((nextReset.getTime() - Date.now()) / 1000));
    set.headers['ratelimit-limit'] = String(limit);
    set.headers['ratelimit-remaining'] = String(Math.max(limit - count, 0));
    set.headers['ratelimit-reset'] = String(resetSeconds);
    if (count > limit) {
      metrics.rateLimited(budget);
      throw new AppError(
        429,
        'rate_limited',
        `Rate limit of ${limit} ${budget} requests per ${windowMs / 1000} s exceeded`,
        { budget, limit, retry_after_seconds: resetSeconds },
        { 'retry-after': String(Math.max(resetSeconds, 1)) },
      );
    }
  }

  return new Elysia({ name: 'rate-limit' })
    .onRequest(async function countRequest({ request, set }) {
      // Preflights are answered by the CORS plugin before this; never count them.
      if (request.method === 'OPTIONS') return;
      const state = requestState(request);
      const path = pathOf(request.url);
      const budget = budgetOf(request.method, path);
      const tenant = budget === 'admin' ? null : await tenantOf(request, keys);
      if (tenant && !tenant.disabled) {
        const limitOf = (b: Budget) =>
          (b === 'write' ? tenant.limits.write : tenant.limits.read) ?? defaults[b];
        if (path === MCP_PATH && request.method === 'POST') {
          // One POST may be any tool: the MCP endpoint charges each call to its own budget.
          state.charge = (b) => charge(set, state.id, b, `${b}:t:${tenant.id}`, limitOf(b));
          return;
        }
        return charge(set, state.id, budget, `${budget}:t:${tenant.id}`, limitOf(budget));
      }
      const ip = clientIp(state.socketIp?.(), request.headers.get('x-forwarded-for'), trust);
      return charge(set, state.id, budget, `${budget}:ip:${ip}`, defaults[budget]);
    })
    .onStop(async function stopRateLimit() {
      // A store passed in belongs to the process (see deps), which closes it on shutdown.
      if (!rateLimitStore) await counters.kill();
    });
}

/**
 * Resolves the bearer key once per request and remembers the answer for the auth guard. A
 * database failure here is left to the guard, which reports it as 503.
 */
async function tenantOf(request: Request, keys: KeyResolver): Promise<ResolvedTenant | null> {
  const token = bearerToken(request.headers.get('authorization'));
  if (!token) return null;
  const state = requestState(request);
  try {
    const tenant = await keys.resolve(token);
    state.auth = { tenant };
    return tenant;
  } catch {
    return null;
  }
}
