import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { DatabaseHandle } from './db/types';

/** Latency buckets in seconds: fine below 100 ms, where a healthy API spends its time. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * The process's Prometheus metrics (prom-client), in a registry of its own per app so that
 * tests can build several apps. Labels are route templates, never raw paths.
 */
export function createMetrics(database: DatabaseHandle) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

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

  return {
    registry,
    /** Counts a finished request under its route template. */
    observeRequest(method: string, route: string, status: number, seconds: number) {
      requests.inc({ method, route, status: String(status) });
      duration.observe({ method, route }, seconds);
    },
    rateLimited(budget: string) {
      rateLimited.inc({ budget });
    },
    requestTimedOut() {
      timeouts.inc();
    },
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
