import { Elysia } from 'elysia';

/** What the request-scoped plugins know about a request, keyed by the Request object. */
export interface RequestState {
  id: string;
  startedAt: number;
  tenantId?: string;
}

const states = new WeakMap<Request, RequestState>();
const CALLER_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** State of a request seen by the request-id plugin (a fresh one for requests it never saw). */
export function requestState(request: Request): RequestState {
  let state = states.get(request);
  if (!state) {
    state = { id: crypto.randomUUID(), startedAt: performance.now() };
    states.set(request, state);
  }
  return state;
}

/**
 * Gives every request an id: the caller's X-Request-Id when it is safe to echo, otherwise a
 * new UUID. It is returned in X-Request-Id on every response, errors included.
 */
export const requestId = new Elysia({ name: 'request-id' }).onRequest(
  // onRequest hooks are always global: they run before routing.
  function assignRequestId({ request, set }) {
    const given = request.headers.get('x-request-id');
    const state: RequestState = {
      id: given && CALLER_ID.test(given) ? given : crypto.randomUUID(),
      startedAt: performance.now(),
    };
    states.set(request, state);
    set.headers['x-request-id'] = state.id;
  },
);
