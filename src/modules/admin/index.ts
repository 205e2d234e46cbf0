import { Elysia } from 'elysia';
import type { AppDeps } from '../../deps';
import { ErrorResponse } from '../../lib/schemas';
import { adminAuth } from '../../plugins/auth';
import { HealthReport } from '../health/model';
import { healthReport } from '../health/service';

/** The media type of draft-inadarei-api-health-check. */
const HEALTH_JSON = 'application/health+json';

/**
 * Operator routes under /v1/admin other than tenants. The health report's logic lives with the
 * probes in modules/health; this module only puts it behind the admin key, since the report
 * names internals (pool size, database errors) that anonymous callers should not see.
 */
export function adminModule({ config, database, startedAt }: AppDeps) {
  return new Elysia({ name: 'admin', prefix: '/admin', detail: { tags: ['admin'] } })
    .use(adminAuth(config.ADMIN_API_KEY))
    .get(
      '/health',
      async ({ set }) => {
        const report = await healthReport(database, startedAt);
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
    );
}
