import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Database, DatabaseHandle } from './db/types';
import type { EmbeddingClient } from './embeddings/client';
import { backlog } from './embeddings/worker';
import type { KeyResolver } from './auth/resolver';
import type { RetentionResult } from './modules/retention/model';
import { VERSION } from './version';

/** Latency buckets in seconds: fine below 100 ms, where a healthy API spends its time. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * Default metrics that read V8 or Node internals Bun (JavaScriptCore) only imitates, measured
 * under Bun 1.4: every heap space reads 0, active handles, requests and resources always 0, no
 * GC is ever observed, and the version is Node's compatibility version rather than Bun's. Dropped
 * so that dashboards do not chart made-up figures; threadstore_build_info carries the versions.
 */
const MISLEADING_UNDER_BUN = [
  'nodejs_heap_space_size_total_bytes',
  'nodejs_heap_space_size_used_bytes',
  'nodejs_heap_space_size_available_bytes',
  'nodejs_active_handles',
  'nodejs_active_handles_total',
  'nodejs_active_requests',
  'nodejs_active_requests_total',
  'nodejs_active_resources',
  'nodejs_active_resources_total',
  'nodejs_gc_duration_seconds',
  'nodejs_version_info',
];

/**
 * The process's Prometheus metrics (prom-client), in a registry of its own per app so that
 * tests can build several apps. Labels are route templates, never raw paths.
 */
export function createMetrics(database: DatabaseHandle) {
  const registry = new Registry();
  // Process CPU, memory and file descriptors, event-loop lag and JS heap size work under Bun.
  collectDefaultMetrics({ register: registry });
  for (const name of MISLEADING_UNDER_BUN) registry.removeSingleMetric(name);
  new Gauge({
    name: 'threadstore_build_info',
    help: 'Always 1; the labels name the release and the Bun runtime',
    labelNames: ['version', 'bun'] as const,
    registers: [registry],
  }).set({ version: VERSION, bun: Bun.version }, 1);

  const requests = new Counter({
    name: 'threadstore_http_requests_total',
    help: 'HTTP requests by method, route template and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'threadstore_http_request_duration_seconds',
    help: 'HTTP request latency by method and route template',
    labelNames: ['method', 'route'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const rateLimited = new Counter({
    name: 'threadstore_rate_limited_total',
    help: 'Requests refused with 429, by budget',
    labelNames: ['budget'] as const,
    registers: [registry],
  });
  const rateLimitStoreErrors = new Counter({
    name: 'threadstore_rate_limit_store_errors_total',
    help: 'Requests whose rate-limit count failed (Redis down or slow); see RATE_LIMIT_ON_STORE_ERROR',
    registers: [registry],
  });
  const timeouts = new Counter({
    name: 'threadstore_request_timeouts_total',
    help: 'Requests answered 503 request_timeout',
    registers: [registry],
  });
  const pool = (
    name: string,
    help: string,
    pick: (s: ReturnType<DatabaseHandle['poolStats']>) => number,
  ) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(pick(database.poolStats()));
      },
    });
  pool('threadstore_db_pool_max', 'Database connections the pool may open', (s) => s.max);
  pool(
    'threadstore_db_pool_in_use',
    'Database connections running a query or transaction',
    (s) => s.inUse,
  );
  pool(
    'threadstore_db_pool_waiting',
    'Queries waiting for a database connection',
    (s) => s.waiting,
  );
  pool(
    'threadstore_db_queries_in_flight',
    'Queries sent to the database and not yet answered, pipelined ones included',
    (s) => s.inFlight,
  );
  const retentionArchived = new Counter({
    name: 'threadstore_retention_archived_total',
    help: 'Messages archived by the retention job',
    registers: [registry],
  });
  const retentionPurged = new Counter({
    name: 'threadstore_retention_purged_total',
    help: 'Messages deleted by the retention job',
    registers: [registry],
  });
  const retentionLastRun = new Gauge({
    name: 'threadstore_retention_last_run_timestamp_seconds',
    help: 'When the last retention run of this process started (0: none yet)',
    registers: [registry],
  });
  const retentionDuration = new Gauge({
    name: 'threadstore_retention_last_run_duration_seconds',
    help: 'How long the last retention run of this process took',
    registers: [registry],
  });
  const retentionErrors = new Counter({
    name: 'threadstore_retention_failures_total',
    help: 'Retention runs that ended with an error',
    registers: [registry],
  });

  return {
    registry,
    /** Records a finished retention run; a skipped one did nothing and is not a run. */
    observeRetention(result: RetentionResult) {
      if (result.skipped) return;
      retentionArchived.inc(result.archived);
      retentionPurged.inc(result.purged);
      retentionLastRun.set(Date.parse(result.started_at) / 1000);
      retentionDuration.set(result.duration_ms / 1000);
      if (result.error) retentionErrors.inc();
    },
    /** Counts a finished request under its route template. */
    observeRequest(method: string, route: string, status: number, seconds: number) {
      requests.inc({ method, route, status: String(status) });
      duration.observe({ method, route }, seconds);
    },
    rateLimited(budget: string) {
      rateLimited.inc({ budget });
    },
    /** A request whose rate-limit count failed, whatever the policy then did with it. */
    rateLimitStoreError() {
      rateLimitStoreErrors.inc();
    },
    requestTimedOut() {
      timeouts.inc();
    },
    /** Adds the key cache's series: its size and whether changes from other instances arrive. */
    observeKeys(keys: KeyResolver) {
      new Gauge({
        name: 'threadstore_key_listener_up',
        help: 'Whether key changes made by other instances reach this one (LISTEN connected): 1 or 0',
        registers: [registry],
        collect() {
          this.set(keys.listenerState().listening ? 1 : 0);
        },
      });
      new Gauge({
        name: 'threadstore_key_cache_entries',
        help: 'API keys held in the in-process key cache',
        registers: [registry],
        collect() {
          this.set(keys.size);
        },
      });
    },
    /** Adds the embedding client's and the backlog's series (only when embeddings are on). */
    observeEmbeddings(client: EmbeddingClient, db: Database) {
      const calls = new Counter({
        name: 'threadstore_embedding_requests_total',
        help: 'Calls to the embedding service by outcome',
        labelNames: ['outcome'] as const,
        registers: [registry],
      });
      const latency = new Histogram({
        name: 'threadstore_embedding_request_duration_seconds',
        help: 'Latency of calls to the embedding service',
        buckets: LATENCY_BUCKETS,
        registers: [registry],
      });
      client.onCall = (outcome, seconds) => {
        calls.inc({ outcome });
        latency.observe(seconds);
      };
      new Gauge({
        name: 'threadstore_embedding_circuit_state',
        help: 'Embedding circuit breaker: 0 closed, 1 open, 2 half-open',
        registers: [registry],
        collect() {
          this.set(CIRCUIT_VALUES[client.state().state]);
        },
      });
      // One query per scrape feeds the three backlog gauges.
      let reading: Promise<Awaited<ReturnType<typeof backlog>> | null> | null = null;
      const read = () => {
        reading ??= backlog(db)
          .catch(() => null)
          .finally(() => setTimeout(() => (reading = null), 0));
        return reading;
      };
      const gauge = (
        name: string,
        help: string,
        pick: (b: Awaited<ReturnType<typeof backlog>>) => number,
      ) =>
        new Gauge({
          name,
          help,
          registers: [registry],
          async collect() {
            const b = await read();
            if (b) this.set(pick(b));
          },
        });
      gauge('threadstore_embedding_backlog', 'Messages waiting to be embedded', (b) => b.pending);
      gauge(
        'threadstore_embedding_oldest_pending_seconds',
        'Age of the oldest message waiting to be embedded',
        (b) => b.oldestSeconds,
      );
      gauge('threadstore_embedding_failed', 'Messages whose embedding failed', (b) => b.failed);
    },
  };
}

const CIRCUIT_VALUES = { closed: 0, open: 1, 'half-open': 2 } as const;

export type Metrics = ReturnType<typeof createMetrics>;
