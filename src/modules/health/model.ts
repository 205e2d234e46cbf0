import { t } from 'elysia';
import { Timestamp } from '../../lib/schemas';

// Shapes of draft-inadarei-api-health-check-06 ("Health Check Response Format for HTTP APIs"),
// limited to the fields threadstore fills. The draft allows extra fields, so a check may carry
// more than it lists (the pool check adds `max` and `waiting`).

/** pass: healthy; warn: healthy with concerns; fail: unhealthy (the draft's three values). */
export const HealthStatus = t.Union([t.Literal('pass'), t.Literal('warn'), t.Literal('fail')], {
  description: 'pass: healthy; warn: healthy with concerns; fail: unhealthy',
});

/** One reading of one component. */
export const HealthCheck = t.Object(
  {
    componentType: t.Optional(
      t.String({ description: 'component, datastore or system', examples: ['datastore'] }),
    ),
    observedValue: t.Optional(t.Union([t.Number(), t.String(), t.Boolean()])),
    observedUnit: t.Optional(t.String({ examples: ['ms', 's', 'connections'] })),
    status: HealthStatus,
    time: Timestamp,
    output: t.Optional(t.String({ description: 'Why the check is not passing, or a note' })),
    max: t.Optional(t.Integer({ description: 'Connections the pool may open' })),
    waiting: t.Optional(t.Integer({ description: 'Queries waiting for a connection' })),
    circuit: t.Optional(
      t.Union([t.Literal('closed'), t.Literal('open'), t.Literal('half-open')], {
        description: 'State of the embedding service circuit breaker',
      }),
    ),
    lastError: t.Optional(t.String({ description: 'Last failure of the component and when' })),
    latencyMs: t.Optional(t.Number({ description: 'Duration of the last call, in ms' })),
    oldestPendingSeconds: t.Optional(
      t.Number({ description: 'Age of the oldest message waiting to be embedded' }),
    ),
    failedMessages: t.Optional(t.Integer({ description: 'Messages whose embedding failed' })),
    lastRunAt: t.Optional(Timestamp),
    since: t.Optional(Timestamp),
    durationMs: t.Optional(t.Number({ description: 'Duration of the last retention run, in ms' })),
    archived: t.Optional(t.Integer({ description: 'Messages the last retention run archived' })),
    purged: t.Optional(t.Integer({ description: 'Messages the last retention run deleted' })),
    tenants: t.Optional(t.Integer({ description: 'Tenants the last retention run changed' })),
    complete: t.Optional(
      t.Boolean({ description: 'False when the last retention run stopped before the end' }),
    ),
  },
  { description: 'One reading of one component (draft-inadarei-api-health-check)' },
);

const readings = (description: string) => t.Array(HealthCheck, { description });

/** The whole health document; `status` is the worst status of the checks. */
export const HealthReport = t.Object(
  {
    status: HealthStatus,
    version: t.String({ description: 'Release of threadstore', examples: ['0.1.0'] }),
    releaseId: t.Optional(t.String()),
    serviceId: t.Optional(t.String()),
    description: t.String(),
    output: t.Optional(
      t.String({ description: 'The failing and warning checks, on warn or fail' }),
    ),
    checks: t.Object(
      {
        'database:responseTime': readings('Time a trivial query takes, in ms'),
        'database:connections': readings('Pool connections in use, the pool size and waiters'),
        migrations: readings('Every migration of this release is applied'),
        embeddings: readings('The embedding service'),
        retention: readings('The last retention run'),
        redis: t.Optional(
          readings('The Redis holding the rate-limit counters (present with REDIS_URL only)'),
        ),
        'keys:listener': readings(
          'Whether key changes made by other instances reach this one (LISTEN/NOTIFY)',
        ),
        uptime: readings('Seconds since the process started'),
      },
      { description: 'Readings keyed "component:measurement"' },
    ),
  },
  {
    description:
      'Health Check Response Format for HTTP APIs (draft-inadarei-api-health-check), ' +
      'served as application/health+json',
  },
);
