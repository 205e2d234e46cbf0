import { Elysia } from 'elysia';
import { requestState } from '../lib/request-state';

const CALLER_ID = /^[A-Za-z0-9._-]{1,128}$/;

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
