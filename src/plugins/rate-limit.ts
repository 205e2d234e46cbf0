import QuickLRU from '@alloc/quick-lru';
import { Elysia } from 'elysia';
import type { Context as RateLimitStore } from 'elysia-rate-limit';
import type { Config } from '../config';
import { clientIp, parseTrustProxy } from '../lib/client-ip';
import { errors } from '../lib/errors';
import { routePathOf } from '../lib/path';
import { peekBearerTenant, resolveBearerTenant } from '../auth/bearer';
import { type Budget, type Pricing, type RequestState, requestState } from '../lib/request-state';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import type { KeyResolver, ResolvedTenant } from '../auth/resolver';
import { MemoryRateLimitStore } from './rate-limit-memory';

/** Keys held by the in-process store; beyond this the least recently used is forgotten. */
const STORE_MAX_KEYS = 100_000;
/** Spent budgets remembered (see `spent`); beyond this the least recently used is forgotten. */
const SPENT_MAX_KEYS = 10_000;
const WRITE_METHODS = new Set(['POST', 'PATCH', 'PUT', 'DELETE']);
/**
 * Never counted: load balancers and kubelets probe every instance from one address, and with
 * REDIS_URL a budget would be shared by the whole fleet's probes, so healthy instances would be
 * marked dead once it ran out.
 */
const PROBE_PATHS = new Set(['/livez', '/readyz']);
const OPERATOR_PATHS = new Set(['/metrics', '/openapi.json', '/docs']);
/** At most one warning per interval about a failing counter store, however many requests fail. */
const STORE_ERROR_LOG_INTERVAL_MS = 1000;

/**
 * The budget of a route (its registered path, or a path read by `routePathOf`). Admin routes
 * and operator endpoints have a budget of their own, so tenant traffic never starves them.
 */
export function budgetOf(method: string, route: string): Budget {
  if (
    OPERATOR_PATHS.has(route) ||
    route.startsWith('/docs/') ||
    route === '/v1/admin' ||
    route.startsWith('/v1/admin/')
  ) {
    return 'admin';
  }
  // Searches are POSTs (the query is a body) but read nothing into the store.
  if (route === '/v1/search') return 'read';
  return WRITE_METHODS.has(method) ? 'write' : 'read';
}

/**
 * How a request to `route` is counted; POSTs to `perMessageRoute` (when given) are counted
 * per message by the route itself.
 */
export function pricingOf(method: string, route: string, perMessageRoute?: string): Pricing {
  if ((method === 'GET' || method === 'HEAD') && PROBE_PATHS.has(route)) return 'free';
  if (method === 'POST' && perMessageRoute !== undefined && route === perMessageRoute) {
    return 'per-message';
  }
  return budgetOf(method, route);
}

export interface RateLimitOptions {
  config: Config;
  keys: KeyResolver;
  logger: Logger;
  metrics: Metrics;
  /** Counter store shared by the fleet (Redis); in process (MemoryRateLimitStore) when null. */
  rateLimitStore?: RateLimitStore | null;
  /**
   * The route (registered path) whose POSTs are counted per JSON-RPC message by the route
   * itself, through `RequestState.charge` (the MCP endpoint, passed in by app.ts). Absent:
   * every route is counted here, once.
   */
  perMessageRoute?: string;
}

/**
 * Counts every request once, first thing (before parsing, validation and authentication), so
 * that failures cannot refund budget. elysia-rate-limit's own hook runs after validation and
 * refunds failed requests, so its store interface is used here from an onRequest hook
 * instead. The key is the tenant of a valid API key, and the client IP otherwise: guessing keys
 * spends the guesser's own budget. A window starts at a key's first request. Every counted
 * response carries RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (seconds to the
 * window's end); a 429 carries Retry-After with the same number.
 *
 * The budget is the route's, read from the path as Elysia's router reads it (`routePathOf`),
 * and checked again against the route Elysia matched before its handler runs: a request read
 * as another route is counted again as its own, so no spelling of a path runs a handler on
 * another route's budget. The probes are never counted; the MCP endpoint counts each message
 * (`RequestState.charge`).
 *
 * Keys are looked up only when they must be: a token that cannot be a tenant key, or a key
 * found unknown moments ago, is answered from memory (KeyResolver.peek), and a key not seen
 * lately from an address that has spent its budget gets its 429 before any lookup (so does
 * a valid key not cached yet, from such an address).
 *
 * When the store fails (Redis down or slower than REDIS_TIMEOUT_MS) the request is let through
 * uncounted, or refused with 503 rate_limit_unavailable, per RATE_LIMIT_ON_STORE_ERROR; the
 * failure is counted in /metrics and logged at most once a second.
 */
export function rateLimit({
  config,
  keys,
  logger,
  metrics,
  rateLimitStore,
  perMessageRoute,
}: RateLimitOptions) {
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
  /**
   * Counters that have no budget left, until their window ends, as this instance last saw
   * them: a request of such an address whose key needs a lookup is refused before the lookup.
   */
  const spent = new QuickLRU<string, true>({ maxSize: SPENT_MAX_KEYS });
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
    if (deny) throw errors.rateLimitUnavailable();
  };

  /**
   * Counts one request of `budget` against `key`; throws 429 (or 503 per the store policy).
   * Whether it was counted: false when the store failed and the request is let through.
   */
  async function charge(
    set: { headers: Record<string, unknown> },
    requestId: string,
    budget: Budget,
    key: string,
    limit: number,
  ): Promise<boolean> {
    let counted: { count: number; nextReset: Date };
    try {
      counted = await counters.increment(key, windowMs, Date.now());
    } catch (err) {
      storeFailed(err, requestId, budget);
      return false;
    }
    const { count, nextReset } = counted;
    const untilReset = nextReset.getTime() - Date.now();
    if (count >= limit && untilReset > 0) spent.set(key, true, { maxAge: untilReset });
    const resetSeconds = Math.max(0, Math.ceil(untilReset / 1000));
    set.headers['ratelimit-limit'] = String(limit);
    set.headers['ratelimit-remaining'] = String(Math.max(limit - count, 0));
    set.headers['ratelimit-reset'] = String(resetSeconds);
    if (count > limit) {
      metrics.rateLimited(budget);
      throw errors.rateLimited(
        `Rate limit of ${limit} ${budget} requests per ${windowMs / 1000} s exceeded`,
        { budget, limit, retry_after_seconds: resetSeconds },
      );
    }
    return true;
  }

  /** Gives back a count taken from the client's address; a failure leaves it spent. */
  async function refund(key: string): Promise<void> {
    try {
      await counters.decrement(key);
    } catch {
      metrics.rateLimitStoreError();
    }
  }

  /** Counts a request priced `pricing` (not free) against its tenant or its client's address. */
  async function chargeRequest(
    request: Request,
    set: { headers: Record<string, unknown> },
    state: RequestState,
    pricing: Budget | 'per-message',
  ): Promise<void> {
    // Without a valid key nothing runs on the MCP endpoint: one count, as any POST.
    const budget = pricing === 'per-message' ? budgetOf('POST', perMessageRoute!) : pricing;
    const addressKey = () => {
      const ip = clientIp(state.socketIp?.(), request.headers.get('x-forwarded-for'), trust);
      return `${budget}:ip:${ip}`;
    };
    if (budget === 'admin') {
      await charge(set, state.id, budget, addressKey(), defaults.admin);
      return;
    }
    let tenant = peekBearerTenant(request, keys);
    if (tenant === undefined) {
      // Only a lookup can tell. A client known to have spent its budget is refused first,
      // without one: its address pays, as for any refused request.
      const key = addressKey();
      const counted =
        spent.has(key) && (await charge(set, state.id, budget, key, defaults[budget]));
      tenant = await tenantOf(request, keys);
      if (counted) {
        // Its window had ended meanwhile, and the count was not a refusal.
        if (!tenant || tenant.disabled) return;
        await refund(key);
      }
    }
    if (!tenant || tenant.disabled) {
      await charge(set, state.id, budget, addressKey(), defaults[budget]);
      return;
    }
    const { id, limits } = tenant;
    const limitOf = (b: Budget) => (b === 'write' ? limits.write : limits.read) ?? defaults[b];
    if (pricing === 'per-message') {
      state.charge = async (b) => {
        state.charged = (state.charged ?? 0) + 1;
        await charge(set, state.id, b, `${b}:t:${id}`, limitOf(b));
      };
      return;
    }
    await charge(set, state.id, budget, `${budget}:t:${id}`, limitOf(budget));
  }

  return new Elysia({ name: 'rate-limit' })
    .onRequest(async function countRequest({ request, set }) {
      // Preflights are answered by the CORS plugin before this; never count them.
      if (request.method === 'OPTIONS') return;
      const state = requestState(request);
      const pricing = pricingOf(request.method, routePathOf(request.url), perMessageRoute);
      state.pricing = pricing;
      if (pricing !== 'free') await chargeRequest(request, set, state, pricing);
    })
    .onTransform({ as: 'global' }, async function checkCharged({ request, route, set }) {
      if (request.method === 'OPTIONS') return;
      const state = requestState(request);
      const pricing = pricingOf(request.method, route, perMessageRoute);
      if (state.pricing === pricing) return;
      // routePathOf read the path as another route than the router matched (a bug there):
      // the request is counted as its own route before that route's handler runs.
      logger.error(
        { request_id: state.id, method: request.method, route, counted_as: state.pricing },
        'rate limit: request counted as another route; counted again as its own',
      );
      state.pricing = pricing;
      if (pricing !== 'free') await chargeRequest(request, set, state, pricing);
    })
    .onAfterResponse({ as: 'global' }, async function countUnread({ request }) {
      // An MCP request refused before its messages were read (a body that is not JSON, too
      // large, bad headers) is one read all the same, counted as it ends: nothing ran, so
      // there was nothing to refuse beforehand.
      const state = requestState(request);
      if (state.pricing !== 'per-message' || !state.charge || state.charged) return;
      await state.charge('read').catch(() => {});
    })
    .onStop(async function stopRateLimit() {
      // A store passed in belongs to the process (see deps), which closes it on shutdown.
      if (!rateLimitStore) await counters.kill();
    });
}

/**
 * With RATE_LIMIT_ENABLED=false: nothing is counted, and routes that count for themselves (the
 * MCP endpoint, which refuses to run a tool without a way to count it) are told so.
 */
export const unlimited = new Elysia({ name: 'rate-limit' }).onRequest(function countNothing({
  request,
}) {
  requestState(request).charge = async () => {};
});

/**
 * Looks the bearer key up (src/auth/bearer.ts keeps the answer for the auth guard). A database
 * failure here is left to the guard, which looks again and reports it as 503.
 */
async function tenantOf(request: Request, keys: KeyResolver): Promise<ResolvedTenant | null> {
  try {
    return await resolveBearerTenant(request, keys);
  } catch {
    return null;
  }
}
