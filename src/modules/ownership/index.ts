import { Elysia, t } from 'elysia';
import type { AppDeps } from '../../deps';
import { commonErrors, IdParams } from '../../lib/schemas';
import { DELETE_DESCRIPTION, DeletedTenant, EXPORT_DESCRIPTION, NDJSON } from './model';
import { deleteTenant, ndjsonStream, openExport } from './service';

const security = [{ adminKey: [] }];

/** Operator routes over all of a tenant's data: export it, or delete it. */
export function ownershipModule({ db, keys, config, logger }: AppDeps) {
  return new Elysia({ name: 'ownership', prefix: '/tenants', detail: { tags: ['admin'] } })
    .get(
      '/:id/export',
      async ({ params }) => {
        // Awaited here, so an unknown tenant is a 404 before the 200 and its stream begin.
        const lines = await openExport(db, params.id);
        // A Response of our own: Elysia passes its body through unbuffered (and merges the
        // headers plugins set, X-Request-Id among them), and the transport's timeout stops
        // applying as soon as it is returned.
        const failed = (err: unknown) =>
          logger.error({ err, tenant_id: params.id }, 'tenant export failed midway');
        return new Response(ndjsonStream(lines, failed), {
          headers: { 'content-type': NDJSON, 'cache-control': 'no-store' },
        });
      },
      {
        params: IdParams,
        response: {
          // The OpenAPI plugin files every string body under text/plain; the media type that is
          // actually sent is named here and in the description.
          200: t.String({ description: 'NDJSON lines', contentMediaType: NDJSON }),
          404: commonErrors[422],
          ...commonErrors,
        },
        detail: {
          summary: "Export all of a tenant's data",
          description: EXPORT_DESCRIPTION,
          security,
        },
      },
    )
    .delete(
      '/:id',
      async ({ params }) => {
        const deleted = await deleteTenant(db, params.id, (id) => keys.forgetTenant(id));
        logger.info({ tenant_id: params.id, deleted }, 'tenant deleted');
        return { deleted };
      },
      {
        params: IdParams,
        response: { 200: DeletedTenant, 404: commonErrors[422], ...commonErrors },
        detail: {
          summary: 'Delete a tenant and all its data',
          description: DELETE_DESCRIPTION,
          security,
        },
      },
    );
}
