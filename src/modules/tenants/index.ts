import { Elysia } from 'elysia';
import type { AppDeps } from '../../deps';
import { IdParams, commonErrors } from '../../lib/schemas';
import {
  CreateTenant,
  CreatedTenant,
  RotateKey,
  RotatedKey,
  Tenant,
  TenantListQuery,
  TenantPage,
  UpdateTenant,
} from './model';
import { createTenant, getTenant, listTenants, rotateKey, updateTenant } from './service';

const security = [{ adminKey: [] }];

/** Operator routes under /v1/admin: tenants and their keys. */
export function tenantsModule({ db, cursors, keys, config }: AppDeps) {
  const retentionDefaults = {
    archive_after_days: config.RETENTION_ARCHIVE_AFTER_DAYS ?? null,
    purge_after_days: config.RETENTION_PURGE_AFTER_DAYS ?? null,
  };
  return new Elysia({ name: 'tenants', prefix: '/tenants', detail: { tags: ['admin'] } })
    .post(
      '',
      async ({ body, set }) => {
        set.status = 201;
        return createTenant(db, body, retentionDefaults);
      },
      {
        // Names the media type for OpenAPI; plugins/json-body.ts parses it.
        parse: 'application/json',
        body: CreateTenant,
        response: { 201: CreatedTenant, ...commonErrors },
        detail: { summary: 'Create a tenant and its first API key', security },
      },
    )
    .get(
      '',
      ({ query }) => listTenants(db, cursors, { limit: query.limit ?? 50, cursor: query.cursor }),
      {
        query: TenantListQuery,
        response: { 200: TenantPage, ...commonErrors },
        detail: { summary: 'List tenants', security },
      },
    )
    .get('/:id', ({ params }) => getTenant(db, params.id), {
      params: IdParams,
      response: { 200: Tenant, 404: commonErrors[422], ...commonErrors },
      detail: { summary: 'Get a tenant', security },
    })
    .patch(
      '/:id',
      async ({ params, body }) => {
        const tenant = await updateTenant(db, params.id, body);
        keys.forgetTenant(params.id);
        return tenant;
      },
      {
        params: IdParams,
        // Names the media type for OpenAPI; plugins/json-body.ts parses it.
        parse: 'application/json',
        body: UpdateTenant,
        response: { 200: Tenant, 404: commonErrors[422], ...commonErrors },
        detail: { summary: 'Rename, disable or enable a tenant', security },
      },
    )
    .post(
      '/:id/keys',
      async ({ params, body, set }) => {
        const rotated = await rotateKey(db, params.id, body?.grace_seconds ?? 0);
        keys.forgetTenant(params.id);
        set.status = 201;
        return rotated;
      },
      {
        params: IdParams,
        // No `parse` here, unlike the other routes: the body is optional, and with a named
        // parser an empty body would reach Elysia's own JSON parser and fail.
        body: RotateKey,
        response: { 201: RotatedKey, 404: commonErrors[422], ...commonErrors },
        detail: {
          summary: 'Rotate the API key (optionally keeping the old one for a grace period)',
          security,
        },
      },
    );
}
