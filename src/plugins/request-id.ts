import { AsyncLocalStorage } from 'node:async_hooks';
import { Elysia } from 'elysia';
import type { ResolvedTenant } from '../modules/tenants/keys';
import type { Budget, Pricing } from './rate-limit';

/** What the request-scoped plugins know about a request, keyed by the Request object. */
export interface RequestState {
  id: string;
  startedAt: number;
  /**
   * The client address as the transport saw it (before any X-Forwarded-For handling), looked
   * up when asked: only requests without a valid key need it.
   */
  socketIp?: () => string | undefined;
  /** Set once the bearer key has been looked up: the tenant, or null for none or a bad key. */
  auth?: { tenant: ResolvedTenant | null };
  tenantId?: string;
  /** Response headers set so far, for responses built outside Elysia (timeouts). */
  headers?: Record<string, unknown>;
  /** The transport answered 503 request_timeout while the handler was still running. */
  timedOut?: boolean;
  /** How the rate limiter counted this request (by the route it read from the path). */
  pricing?: Pricing;
  /**
   * Aborted when the transport answers 503 request_timeout: the database layer then cancels
   * the request's statements in flight and refuses to start new ones (src/db/pool-gate.ts).
   */
  signal?: AbortSignal;
  /**
   * Counts one call against a budget, when the rate limiter left that to the route (the MCP
   * endpoint, whose calls depend on the messages sent); throws 429 over the budget. Absent:
   * nothing can be counted, and the route must refuse to run anything.
   */
  charge?: (budget: Budget) => Promise<void>;
  /** How many calls `charge` counted. */
  charged?: number;
  /** The MCP tool a request called, for its log line. */
  tool?: string;
}

const states = new WeakMap<Request, RequestState>();
/**
 * The state of the request whose work is running, for code that is not handed the Request: the
 * database pool gate reads the tenant (fair sharing) and the timeout signal from it.
 */
const current = new AsyncLocalStorage<RequestState>();
const CALLER_ID = /^[A-Za-z0-9._-]{1,128}$/;

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

/**
 * Gives every request an id: the caller's X-Request-Id when it is safe to echo, otherwise a
 * new UUID. It is returned in X-Request-Id on every response, errors included.
 */
export const requestId = new Elysia({ name: 'request-id' }).onRequest(
  // onRequest hooks are always global: they run before routing.
  function assignRequestId({ request, set }) {
    const state = requestState(request);
    const given = request.headers.get('x-request-id');
    if (given && CALLER_ID.test(given)) state.id = given;
    state.headers = set.headers;
    set.headers['x-request-id'] = state.id;
  },
);
