import { AsyncLocalStorage } from 'node:async_hooks';
import type { ResolvedTenant } from '../auth/resolver';

/** Which budget a request draws on. */
export type Budget = 'write' | 'read' | 'admin';

/**
 * How a route is counted: once against a budget, once per JSON-RPC message (the MCP endpoint,
 * see modules/mcp), or never (the probes).
 */
export type Pricing = Budget | 'per-message' | 'free';

/**
 * What the request-scoped code knows about one request, keyed by the Request object. Each field
 * has one writer, named in its comment; everything else only reads it.
 */
export interface RequestState {
  /**
   * The request id. Written by `requestState` (a new UUID) and then only by the request-id
   * plugin (src/plugins/request-id.ts), which takes the caller's X-Request-Id when it is safe.
   */
  id: string;
  /** When the request arrived (performance.now()). Written by `requestState` only. */
  startedAt: number;
  /**
   * The client address as the transport saw it (before any X-Forwarded-For handling), looked
   * up when asked: only requests without a valid key need it. Written by the transport
   * (src/transport.ts).
   */
  socketIp?: () => string | undefined;
  /**
   * The tenant of the bearer key, or null for none or a bad key; absent until it is known.
   * Written only by src/auth/bearer.ts, the one step that resolves the key for both the rate
   * limiter and the auth guard.
   */
  auth?: { tenant: ResolvedTenant | null };
  /** The tenant the request acts for, once authenticated. Written by the auth guard (src/plugins/auth.ts). */
  tenantId?: string;
  /**
   * Response headers set so far, for responses built outside Elysia (timeouts). Written by the
   * request-id plugin (src/plugins/request-id.ts).
   */
  headers?: Record<string, unknown>;
  /**
   * The transport answered 503 request_timeout while the handler was still running. Written by
   * the transport (src/transport.ts).
   */
  timedOut?: boolean;
  /**
   * How the rate limiter counted this request (by the route it read from the path). Written by
   * the rate limiter (src/plugins/rate-limit.ts).
   */
  pricing?: Pricing;
  /**
   * Aborted when the transport answers 503 request_timeout: the database layer then cancels
   * the request's statements in flight and refuses to start new ones (src/db/pool-gate.ts).
   * Written by the transport (src/transport.ts).
   */
  signal?: AbortSignal;
  /**
   * Counts one call against a budget, when the rate limiter left that to the route (the MCP
   * endpoint, whose calls depend on the messages sent); throws 429 over the budget. Absent:
   * nothing can be counted, and the route must refuse to run anything. Written by the rate
   * limiter (src/plugins/rate-limit.ts: `rateLimit`, or `unlimited` when limits are off).
   */
  charge?: (budget: Budget) => Promise<void>;
  /** How many calls `charge` counted. Written by the rate limiter's `charge` closure. */
  charged?: number;
  /** The MCP tool a request called, for its log line. Written by the MCP module (src/modules/mcp). */
  tool?: string;
}

const states = new WeakMap<Request, RequestState>();
/**
 * The state of the request whose work is running, for code that is not handed the Request: the
 * database pool gate reads the tenant (fair sharing) and the timeout signal from it.
 */
const current = new AsyncLocalStorage<RequestState>();

/** State of a request, created on first use (by the transport, or by the first plugin). */
export function requestState(request: Request): RequestState {
  let state = states.get(request);
  if (!state) {
    state = { id: crypto.randomUUID(), startedAt: performance.now() };
    states.set(request, state);
  }
  return state;
}

/** Runs `fn` (the handling of one request) with `state` as the current request's state. */
export function withRequestState<T>(state: RequestState, fn: () => T): T {
  return current.run(state, fn);
}

/** The state of the request being handled, or undefined outside one (background work). */
export function currentRequestState(): RequestState | undefined {
  return current.getStore();
}
