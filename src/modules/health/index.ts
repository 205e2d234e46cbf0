import type { Static } from '@sinclair/typebox';
import { Elysia, t } from 'elysia';
import { migrationsApplied } from '../../db/migrate';
import type { AppDeps } from '../../deps';
import { errors } from '../../lib/errors';
import { bearerToken, safeEqual } from '../../auth/keys';
import { ErrorResponse } from '../../lib/schemas';
import { HealthCheck } from './model';
import { withTimeout } from '../../lib/time';
import { DATABASE_TIMEOUT_MS, listenerCheck, redisCheck } from './service';

type Check = Static<typeof HealthCheck>;

/**
 * Probes for load balancers and orchestrators (unauthenticated) and the Prometheus scrape
 * endpoint (behind METRICS_TOKEN when set), outside /v1. The detailed health report is an admin
 * route: see modules/admin.
 */
export function healthModule({
  database,
  lifecycle,
  metrics,
  config,
  rateLimitStore,
  keys,
}: AppDeps) {
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
          throw errors.notReady('The server is shutting down');
        }
        const ready = await withTimeout(
          (async () => {
            await database.ping();
            return migrationsApplied(database.db);
          })(),
          DATABASE_TIMEOUT_MS,
        ).catch(() => null);
        if (ready === null) {
          throw errors.databaseUnavailable('The database is not answering');
        }
        if (!ready) {
          throw errors.notReady('Database migrations are not applied');
        }
        // Degraded components are reported, never a reason to leave the rotation. Redis: requests
        // are still served (or refused) per RATE_LIMIT_ON_STORE_ERROR. The key listener: keys
        // still work, revocations by other instances take up to a second.
        const checks: { redis?: Check[]; 'keys:listener'?: Check[] } = {};
        const redis = rateLimitStore ? redisCheck(rateLimitStore) : null;
        if (redis && redis.status !== 'pass') {
          checks.redis = [brief(redis, 'rate-limit store failing')];
        }
        const listener = listenerCheck(keys);
        if (listener.status !== 'pass') {
          checks['keys:listener'] = [brief(listener, 'key changes of other instances unheard')];
        }
        if (checks.redis || checks['keys:listener']) return { status: 'ready' as const, checks };
        return { status: 'ready' as const };
      },
      {
        response: {
          200: t.Object({
            status: t.Literal('ready'),
            checks: t.Optional(
              t.Object(
                {
                  redis: t.Optional(t.Array(HealthCheck)),
                  'keys:listener': t.Optional(t.Array(HealthCheck)),
                },
                { description: 'Present when a component is degraded but not failing readiness' },
              ),
            ),
          }),
          503: ErrorResponse,
        },
        detail: {
          summary: 'Not shutting down, the database answers and migrations are applied',
          description:
            'A failing Redis (REDIS_URL) or a lost LISTEN connection (key changes of other ' +
            'instances) does not fail readiness: the answer stays 200 and lists the `redis` or ' +
            '`keys:listener` check as `warn`.',
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

/** A reading without its details: error texts are for the admin health report only. */
function brief({ componentType, status, time }: Check, output: string): Check {
  return { componentType, status, time, output };
}

/** Checks the scrape token in constant time; with no token configured the endpoint is open. */
function metricsGuard(token: string | undefined) {
  return function authenticateScraper({ request }: { request: Request }) {
    if (token === undefined) return;
    const given = bearerToken(request.headers.get('authorization'));
    if (given && safeEqual(given, token)) return;
    throw errors.unauthorized(
      given ? 'The metrics token is not valid' : 'The metrics token is required',
    );
  };
}
