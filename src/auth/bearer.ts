import { bearerToken } from './keys';
import { requestState } from '../lib/request-state';
import type { KeyResolver, ResolvedTenant } from './resolver';

/*
 * The one step that turns a request's bearer key into its tenant. The rate limiter asks first
 * (it counts by tenant, before parsing); the auth guard asks later and reads the answer the
 * limiter got, so a key is looked up at most once per request. The answer is kept in
 * RequestState.auth, which nothing else writes.
 */

/**
 * The tenant of the request's bearer key as far as memory tells without a database lookup:
 * null for no key, a key that cannot be a tenant's, or one found unknown moments ago; undefined
 * when only a lookup can tell (see KeyResolver.peek). A known answer is kept for the request.
 */
export function peekBearerTenant(
  request: Request,
  keys: KeyResolver,
): ResolvedTenant | null | undefined {
  const state = requestState(request);
  if (state.auth) return state.auth.tenant;
  const token = bearerToken(request.headers.get('authorization'));
  if (!token) return null;
  const tenant = keys.peek(token);
  if (tenant !== undefined) state.auth = { tenant };
  return tenant;
}

/**
 * The tenant of the request's bearer key, looked up when not known yet, or null for no key or
 * a bad key. The answer is kept for the request; a failed lookup (the database) throws and
 * keeps nothing, so a later caller looks again.
 */
export async function resolveBearerTenant(
  request: Request,
  keys: KeyResolver,
): Promise<ResolvedTenant | null> {
  const state = requestState(request);
  if (state.auth) return state.auth.tenant;
  const token = bearerToken(request.headers.get('authorization'));
  if (!token) return null;
  const tenant = await keys.resolve(token);
  state.auth = { tenant };
  return tenant;
}
