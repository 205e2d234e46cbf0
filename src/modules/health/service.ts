import type { Static } from '@sinclair/typebox';
import { migrationsApplied } from '../../db/migrate';
import type { DatabaseHandle } from '../../db/types';
import { withTimeout } from '../../lib/time';
import type { AppDeps } from '../../deps';
import type { EmbeddingClient } from '../../embeddings/client';
import type { SearchCapabilities } from '../../embeddings/types';
import { backlog } from '../../embeddings/worker';
import { causes } from '../../lib/errors';
import type { RedisRateLimitStore } from '../../plugins/rate-limit-redis';
import { type KeyResolver, UNCONFIRMED_TTL_MS } from '../../auth/resolver';
import { lastRetentionRun, storedRetentionRun } from '../retention/job';
import type { RetentionResult } from '../retention/model';
import { VERSION } from '../../version';
import type { HealthCheck, HealthReport, HealthStatus } from './model';

type Check = Static<typeof HealthCheck>;
type Status = Static<typeof HealthStatus>;
type Report = Static<typeof HealthReport>;

/**
 * The database checks of one report share this budget: a hung database (SIGSTOPped, a black-holed
 * network) must turn health into a prompt `fail`, not a request that hangs with it.
 */
export const DATABASE_TIMEOUT_MS = 2000;
/** A ping slower than this still works but is worth a look. */
const SLOW_PING_MS = 1000;

const SEVERITY: Record<Status, number> = { pass: 0, warn: 1, fail: 2 };

/**
 * Reads every component and rates the whole: the worst status of the checks. Never throws: a
 * failing component is a `fail` reading, since the report exists to describe failures.
 */
export async function healthReport({
  database,
  startedAt,
  search,
  embedder,
  keys,
  rateLimitStore,
}: Pick<AppDeps, 'database' | 'startedAt' | 'search' | 'embedder' | 'keys'> &
  Partial<Pick<AppDeps, 'rateLimitStore'>>): Promise<Report> {
  // Read before the ping takes a connection, so the report does not count itself.
  const pool = database.poolStats();
  const deadline = performance.now() + DATABASE_TIMEOUT_MS;
  const ping = await pingCheck(database);
  const checks: Report['checks'] = {
    'database:responseTime': [ping],
    'database:connections': [
      {
        componentType: 'datastore',
        observedValue: pool.inUse,
        observedUnit: 'connections',
        max: pool.max,
        waiting: pool.waiting,
        ...(pool.waiting > 0
          ? { status: 'warn', output: `${pool.waiting} queries waiting for a connection` }
          : { status: 'pass' }),
        time: now(),
      },
    ],
    migrations: [await migrationsCheck(database, ping.status !== 'fail', deadline)],
    embeddings: [
      await embeddingsCheck(database, search, embedder, ping.status !== 'fail', deadline),
    ],
    retention: [await retentionCheck(database, ping.status !== 'fail', deadline)],
    ...(rateLimitStore ? { redis: [redisCheck(rateLimitStore)] } : {}),
    'keys:listener': [listenerCheck(keys)],
    uptime: [
      {
        componentType: 'system',
        observedValue: Math.floor((Date.now() - startedAt.getTime()) / 1000),
        observedUnit: 's',
        status: 'pass',
        time: now(),
      },
    ],
  };

  let status: Status = 'pass';
  const problems: string[] = [];
  for (const [key, readings] of Object.entries(checks)) {
    for (const reading of readings) {
      if (SEVERITY[reading.status] > SEVERITY[status]) status = reading.status;
      if (reading.status !== 'pass') problems.push(`${key}: ${reading.output ?? reading.status}`);
    }
  }
  return {
    status,
    version: VERSION,
    description: 'threadstore: multi-tenant message store',
    // The draft wants `output` on warn and fail only.
    ...(problems.length > 0 ? { output: problems.join('; ') } : {}),
    checks,
  };
}

async function pingCheck(database: DatabaseHandle): Promise<Check> {
  const started = performance.now();
  let output: string | undefined;
  try {
    await withTimeout(database.ping(), DATABASE_TIMEOUT_MS);
  } catch (err) {
    output = messageOf(err);
  }
  const ms = Math.round((performance.now() - started) * 100) / 100;
  const status: Status = output ? 'fail' : ms > SLOW_PING_MS ? 'warn' : 'pass';
  return {
    componentType: 'datastore',
    observedValue: ms,
    observedUnit: 'ms',
    status,
    time: now(),
    ...(output ? { output } : status === 'warn' ? { output: `slow: ${ms} ms` } : {}),
  };
}

async function migrationsCheck(
  database: DatabaseHandle,
  reachable: boolean,
  deadline: number,
): Promise<Check> {
  const reading = (status: Status, output?: string): Check => ({
    componentType: 'datastore',
    status,
    time: now(),
    ...(output ? { output } : {}),
  });
  // Asking a database that did not answer a ping would only wait out the timeout again.
  if (!reachable) return reading('fail', 'not checked: the database is not answering');
  try {
    const budget = Math.max(deadline - performance.now(), 1);
    const applied = await withTimeout(migrationsApplied(database.db), budget);
    return applied
      ? reading('pass')
      : reading('fail', 'migrations are pending: run `threadstore migrate`');
  } catch (err) {
    return reading('fail', messageOf(err));
  }
}

/**
 * The last retention run: this process's, else the one any instance stored. A failed run is
 * `warn`: the API is unaffected, and the next run retries.
 */
async function retentionCheck(
  database: DatabaseHandle,
  reachable: boolean,
  deadline: number,
): Promise<Check> {
  let last: RetentionResult | null = lastRetentionRun(database);
  if (!last && reachable) {
    try {
      last = await withTimeout(
        storedRetentionRun(database.db),
        Math.max(deadline - performance.now(), 1),
      );
    } catch {
      last = null;
    }
  }
  const base = { componentType: 'component', time: now() } as const;
  if (!last) return { ...base, status: 'pass', output: 'no run yet' };
  return {
    ...base,
    status: last.error ? 'warn' : 'pass',
    ...(last.error ? { output: `last run failed: ${last.error}` } : {}),
    observedValue: last.archived + last.purged,
    observedUnit: 'messages archived or purged by the last run',
    lastRunAt: last.started_at,
    durationMs: last.duration_ms,
    archived: last.archived,
    purged: last.purged,
    tenants: last.tenants.length,
    complete: last.complete,
  };
}

/**
 * The LISTEN connection that brings key changes from other instances. Down or silent is `warn`,
 * never `fail`: keys still work, cached ones are only trusted for UNCONFIRMED_TTL_MS meanwhile.
 */
export function listenerCheck(keys: KeyResolver): Check {
  const { listening, since, heardAt } = keys.listenerState();
  const silentMs = Math.max(0, Math.round(Date.now() - heardAt));
  const problem = !listening
    ? `${since ? 'disconnected' : 'not connected yet'}: key changes of other instances go unheard`
    : silentMs >= UNCONFIRMED_TTL_MS
      ? `no heartbeat answered for ${silentMs} ms`
      : null;
  return {
    componentType: 'component',
    observedValue: listening,
    status: problem ? 'warn' : 'pass',
    time: now(),
    ...(since ? { since: since.toISOString() } : {}),
    ...(problem
      ? { output: `${problem}; cached keys are trusted for ${UNCONFIRMED_TTL_MS} ms` }
      : {}),
  };
}

/**
 * The Redis of the rate-limit counters, as the last calls found it (every request, probes
 * included, makes one, so this asks nothing itself). Trouble is `warn`, never `fail`: requests
 * are still served, or refused, as RATE_LIMIT_ON_STORE_ERROR says, and taking every instance out
 * of rotation for it would turn a rate-limit outage into a full one.
 */
export function redisCheck(store: RedisRateLimitStore): Check {
  const { ok, connection, lastFailure } = store.state();
  return {
    componentType: 'datastore',
    observedValue: connection,
    observedUnit: 'connection state',
    status: ok ? 'pass' : 'warn',
    time: now(),
    ...(ok
      ? {}
      : {
          output: `rate-limit counts failing: ${lastFailure?.message ?? `connection ${connection}`}`,
        }),
    ...(lastFailure ? { lastError: `${lastFailure.at}: ${lastFailure.message}` } : {}),
  };
}

/** Drizzle wraps driver errors in "Failed query: …"; the innermost cause names the problem. */
function messageOf(err: unknown): string {
  let current = err;
  // Down to the first link that is not an Error, within three wrappings.
  for (const e of causes(err, 4)) {
    current = e;
    if (!(e instanceof Error)) break;
  }
  const message = current instanceof Error ? current.message : String(current);
  return message || 'unknown error';
}

function now(): string {
  return new Date().toISOString();
}

/**
 * The embedding service and its backlog. Trouble here is `warn`, never `fail`: messages are
 * still stored and served, and full-text search still works. Embeddings left unconfigured are
 * an operator's choice, not a fault.
 */
async function embeddingsCheck(
  database: DatabaseHandle,
  search: SearchCapabilities,
  embedder: EmbeddingClient | null,
  reachable: boolean,
  deadline: number,
): Promise<Check> {
  const base = { componentType: 'component', time: now() } as const;
  if (!search.embeddingsEnabled) {
    return { ...base, status: 'pass', output: `disabled: ${search.semanticReason}` };
  }
  if (!search.semantic || !embedder) {
    return {
      ...base,
      status: 'warn',
      output: `semantic search unavailable: ${search.semanticReason}`,
    };
  }
  const client = embedder.state();
  let pending: Awaited<ReturnType<typeof backlog>> | null = null;
  if (reachable) {
    try {
      pending = await withTimeout(backlog(database.db), Math.max(deadline - performance.now(), 1));
    } catch {
      pending = null;
    }
  }
  const problems: string[] = [];
  if (client.state !== 'closed') problems.push(`circuit ${client.state}`);
  if (client.state !== 'closed' && client.lastError) problems.push(client.lastError.message);
  return {
    ...base,
    status: problems.length > 0 ? 'warn' : 'pass',
    ...(problems.length > 0 ? { output: problems.join(': ') } : {}),
    circuit: client.state,
    ...(pending
      ? {
          observedValue: pending.pending,
          observedUnit: 'pending messages',
          oldestPendingSeconds: Math.round(pending.oldestSeconds),
          failedMessages: pending.failed,
        }
      : {}),
    ...(client.lastError
      ? { lastError: `${client.lastError.at}: ${client.lastError.message}` }
      : {}),
    ...(client.lastLatencyMs !== undefined ? { latencyMs: client.lastLatencyMs } : {}),
  };
}
