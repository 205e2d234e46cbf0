import { Elysia } from 'elysia';
import { errors } from '../lib/errors';
import { resolveBearerTenant } from '../auth/bearer';
import { bearerToken, safeEqual } from '../auth/keys';
import { requestState } from '../lib/request-state';
import type { KeyResolver } from '../auth/resolver';

/** The tenant a request acts for; it only ever comes from the API key. */
export interface TenantContext {
  id: string;
  name: string;
}

const { unauthorized } = errors;

/**
 * Resolves the tenant from `Authorization: Bearer <key>` before validation runs, so anonymous
 * callers learn nothing about the routes' schemas. Deliberately unnamed: Elysia deduplicates
 * named plugins, and every module that uses this must get its own guard.
 */
export function tenantAuth(keys: KeyResolver) {
  return new Elysia().derive({ as: 'scoped' }, async function authenticateTenant({ request }) {
    const token = bearerToken(request.headers.get('authorization'));
    if (!token) throw unauthorized('A bearer API key is required');
    // The rate limiter has usually looked the key up already; then this reads its answer.
    const tenant = await resolveBearerTenant(request, keys);
    if (!tenant) throw unauthorized('The API key is not valid');
    if (tenant.disabled) throw errors.forbidden('This tenant is disabled');
    requestState(request).tenantId = tenant.id;
    return { tenant: { id: tenant.id, name: tenant.name } satisfies TenantContext };
  });
}

/** Guards /v1/admin with ADMIN_API_KEY, compared in constant time. */
export function adminAuth(adminKey: string) {
  return new Elysia().onTransform({ as: 'scoped' }, function authenticateAdmin({ request }) {
    const token = bearerToken(request.headers.get('authorization'));
    if (!token) throw unauthorized('The admin API key is required');
    if (!safeEqual(token, adminKey)) throw unauthorized('The admin API key is not valid');
  });
}
