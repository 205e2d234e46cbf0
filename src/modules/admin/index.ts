import { Elysia, t } from 'elysia';
import { reindexEmbeddings } from '../../db/search-setup';
import { requeueFailed } from '../../embeddings/worker';
import { errors } from '../../lib/errors';
import type { AppDeps } from '../../deps';
import { commonErrors, ErrorResponse, Uuid } from '../../lib/schemas';
import { HealthReport } from '../health/model';
import { healthReport } from '../health/service';

/** The media type of draft-inadarei-api-health-check. */
const HEALTH_JSON = 'application/health+json';

/**
 * Operator routes under /v1/admin other than tenants. The health report's logic lives with the
 * probes in modules/health; this module only puts it behind the admin key, since the report
 * names internals (pool size, database errors) that anonymous callers should not see.
 */
export function adminModule(deps: AppDeps) {
  const { config } = deps;
  return new Elysia({ name: 'admin', detail: { tags: ['admin'] } })
    .get(
      '/health',
      async ({ set }) => {
        const report = await healthReport(deps);
        set.headers['content-type'] = HEALTH_JSON;
        set.headers['cache-control'] = 'no-store';
        // warn is still healthy: only fail takes the service out (the draft's mapping).
        set.status = report.status === 'fail' ? 503 : 200;
        return report;
      },
      {
        response: { 200: HealthReport, 401: ErrorResponse, 503: HealthReport },
        detail: {
          summary: 'Health of each component (draft-inadarei-api-health-check)',
          description:
            'Answered as `application/health+json`: 200 for pass and warn, 503 for fail. Each ' +
            'database check gives up after 2 s, so a hung database yields a prompt fail.',
          security: [{ adminKey: [] }],
        },
      },
    )
    .post(
      '/embeddings/retry',
      async ({ body }) => {
        requireSemantic(deps);
        return { requeued: await requeueFailed(deps.db, body?.tenant_id) };
      },
      {
        // No `parse`: the body is optional (see the key rotation route).
        body: t.Union([
          t.Object({ tenant_id: t.Optional(Uuid) }, { additionalProperties: false }),
          t.Undefined(),
        ]),
        response: { 200: t.Object({ requeued: t.Integer() }), ...commonErrors },
        detail: {
          summary: 'Queue messages whose embedding failed again (of one tenant, or all)',
          security: [{ adminKey: [] }],
        },
      },
    )
    .post(
      '/embeddings/reindex',
      async () => {
        requireSemantic(deps);
        return { queued: await reindexEmbeddings(deps.database, config) };
      },
      {
        response: { 200: t.Object({ queued: t.Integer() }), ...commonErrors },
        detail: {
          summary: 'Drop every stored vector and embed all messages again with the current model',
          description:
            'Rebuilds the vector column for EMBEDDING_MODEL and EMBEDDING_DIMENSIONS; until the ' +
            'backlog drains, semantic search finds only what is re-embedded.',
          security: [{ adminKey: [] }],
        },
      },
    );
}

/** 422 as from search: one error code, one status. */
function requireSemantic({ search }: AppDeps): void {
  if (!search.semantic) {
    throw errors.semanticSearchDisabled(`Semantic search is unavailable: ${search.semanticReason}`);
  }
}
