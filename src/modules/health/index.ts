import { Elysia, t } from 'elysia';
import { migrationsApplied } from '../../db/migrate';
import type { AppDeps } from '../../deps';
import { AppError } from '../../lib/errors';
import { bearerToken, safeEqual } from '../../lib/keys';
import { ErrorResponse } from '../../lib/schemas';
import { DATABASE_TIMEOUT_MS, withTimeout } from './service';

/** Retry-After of a readiness 503 while the database does not answer. */
const DATABASE_RETRY_AFTER_SECONDS = '2';
/** Retry-After of a readiness 503 while migrations are pending or the process is stopping. */
const NOT_READY_RETRY_AFTER_SECONDS = '5';

/**
 * Probes for load balancers and orchestrators (unauthenticated) and the Prometheus scrape
 * endpoint (behind METRICS_TOKEN when set), outside /v1. The detailed health report is an admin
 * route: see modules/admin.
 */
export function healthModule({ database, lifecycle, metrics, config }: AppDeps) {
  return new Elysia({ name: 'health', detail: { tags: ['probes'] } })
    .get('/livez', () => ({ status: 'ok' as const }), {
      response: { 200: t.Object({ status: t.Literal('ok') }) },
      detail: { summary: 'The process is up' },
    })
    .get(
      '/readyz',
      async () => {
        // First, and without touching the database: a stopping instance must leave the load
        // balancer's rotation while it drains, even though it could still answer.
        if (lifecycle.shuttingDown) {
          throw new AppError(503, 'not_ready', 'The server is shutting down', undefined, {
            'retry-after': NOT_READY_RETRY_AFTER_SECONDS,
          });
        }
        const ready = await withTimeout(
          (async () => {
            await database.ping();
            return migrationsApplied(database.db);
          })(),
          DATABASE_TIMEOUT_MS,
        ).catch(() => null);
        if (ready === null) {
          throw new AppError(
            503,
            'database_unavailable',
            'The database is not answering',
            undefined,
            { 'retry-after': DATABASE_RETRY_AFTER_SECONDS },
          );
        }
        if (!ready) {
          throw new AppError(503, 'not_ready', 'Database migrations are not applied', undefined, {
            'retry-after': NOT_READY_RETRY_AFTER_SECONDS,
          });
        }
        return { status: 'ready' as const };
      },
      {
        response: { 200: t.Object({ status: t.Literal('ready') }), 503: ErrorResponse },
        detail: {
          summary: 'Not shutting down, the database answers and migrations are applied',
        },
      },
    )
    .get(
      '/metrics',
      async ({ set }) => {
        set.headers['content-type'] = metrics.registry.contentType;
        return metrics.registry.metrics();
      },
      {
        beforeHandle: metricsGuard(config.METRICS_TOKEN),
        response: {
          200: t.String({ description: 'Prometheus text exposition format 0.0.4' }),
          401: ErrorResponse,
        },
        detail: {
          summary: 'Prometheus metrics',
          description:
            'Requires `Authorization: Bearer <METRICS_TOKEN>` when METRICS_TOKEN is set; open ' +
            'otherwise. Routes appear as templates (`/v1/messages/:id`), unknown ones as `unmatched`.',
          tags: ['observability'],
        },
      },
    );
}

/** Checks the scrape token in constant time; with no token configured the endpoint is open. */
function metricsGuard(token: string | undefined) {
  return function authenticateScraper({ request }: { request: Request }) {
    if (token === undefined) return;
    const given = bearerToken(request.headers.get('authorization'));
    if (given && safeEqual(given, token)) return;
    throw new AppError(
      401,
      'unauthorized',
      given ? 'The metrics token is not valid' : 'The metrics token is required',
      undefined,
      { 'www-authenticate': 'Bearer' },
    );
  };
}
