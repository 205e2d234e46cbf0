import { sql } from 'drizzle-orm';
import type { Config } from '../../config';
import { rowsOf } from '../../db/raw';
import type { Database, DatabaseHandle } from '../../db/types';
import { errorSummary, type Logger } from '../../logger';
import type { Metrics } from '../../metrics';
import type { RetentionResult, TenantRetention } from './model';
import {
  archiveBatch,
  deleteEmptyConversations,
  lockConversations,
  policiesQuery,
  purgeBatch,
} from './queries';

/** Advisory lock key of the retention job ("tsretain" in ASCII), distinct from migrations'. */
const RETENTION_LOCK_KEY = 0x747372657461696en;
/** application_name of the session that holds the retention lock (see pg_stat_activity). */
const RETENTION_SESSION = 'threadstore-retention';
/** app_settings key under which the last run is kept for other instances and restarts. */
export const LAST_RUN_SETTING = 'retention_last_run';
const DAY_MS = 86_400_000;

export interface RetentionDeps {
  database: DatabaseHandle;
  config: Pick<Config, 'RETENTION_BATCH_SIZE' | 'RETENTION_RUN_TIMEOUT_MS'>;
  logger: Logger;
  metrics?: Metrics;
}

export interface RetentionOptions {
  /** Stops the run between batches (shutdown). */
  signal?: AbortSignal;
  /** Overrides RETENTION_RUN_TIMEOUT_MS; at least one batch always runs, so a run progresses. */
  timeoutMs?: number;
  /** Overrides RETENTION_BATCH_SIZE. */
  batchSize?: number;
}

interface ProcessState {
  running: boolean;
  last: RetentionResult | null;
}

// Keyed by database handle rather than global, so that several apps in one process (tests) each
// have their own; the CLI, the route and the schedule of one process share the handle.
const states = new WeakMap<DatabaseHandle, ProcessState>();

function stateOf(database: DatabaseHandle): ProcessState {
  let state = states.get(database);
  if (!state) {
    state = { running: false, last: null };
    states.set(database, state);
  }
  return state;
}

/** The last run of this process, or null before the first. */
export function lastRetentionRun(database: DatabaseHandle): RetentionResult | null {
  return stateOf(database).last;
}

/** The last run any instance stored, for an instance that has not run the job itself. */
export async function storedRetentionRun(db: Database): Promise<RetentionResult | null> {
  const [row] = rowsOf<{ value: RetentionResult }>(
    await db.execute(sql`select value from app_settings where key = ${LAST_RUN_SETTING}`),
  );
  return row?.value ?? null;
}

/**
 * Applies every tenant's retention policy: purges (deletes) messages older than
 * purge_after_days, then archives those older than archive_after_days. Work is done in batches
 * of RETENTION_BATCH_SIZE rows, each its own short transaction, so writers never wait long and
 * an interrupted run loses nothing: the next one carries on. Cut-offs are fixed at the start.
 * Only one run at a time across instances (an advisory try-lock): a second returns `skipped`
 * at once. Never throws; an error is part of the result.
 */
export async function runRetention(
  deps: RetentionDeps,
  options: RetentionOptions = {},
): Promise<RetentionResult> {
  const { database, config, logger } = deps;
  const state = stateOf(database);
  const startedAt = new Date();
  const started = performance.now();
  const result: RetentionResult = {
    started_at: startedAt.toISOString(),
    duration_ms: 0,
    archived: 0,
    purged: 0,
    conversations_deleted: 0,
    tenants_processed: 0,
    tenants: [],
    complete: false,
    skipped: false,
  };
  const finish = () => {
    result.duration_ms = Math.round(performance.now() - started);
    return result;
  };
  // The advisory lock is per session, and two sessions of this process would exclude each other
  // too; the flag answers without opening one, and is all the embedded database needs.
  if (state.running) return skip(finish());
  state.running = true;
  try {
    const locked = await database.tryAdvisoryLock(
      RETENTION_LOCK_KEY,
      RETENTION_SESSION,
      async (db) => {
        try {
          await applyPolicies(db, result, startedAt, {
            batchSize: options.batchSize ?? config.RETENTION_BATCH_SIZE,
            deadline: started + (options.timeoutMs ?? config.RETENTION_RUN_TIMEOUT_MS),
            signal: options.signal,
          });
        } catch (err) {
          result.error = errorSummary(err);
          result.complete = false;
        }
        finish();
        await store(db, result).catch((err: unknown) =>
          logger.warn({ err }, 'could not store the retention run'),
        );
      },
    );
    if (!locked.acquired) return skip(finish());
  } catch (err) {
    // Could not even open the lock's connection.
    result.error = errorSummary(err);
    finish();
  } finally {
    state.running = false;
  }
  state.last = result;
  deps.metrics?.observeRetention(result);
  const log = { ...result, tenants: result.tenants.length };
  if (result.error) logger.error(log, 'retention run failed');
  else logger.info(log, 'retention run finished');
  return result;

  function skip(r: RetentionResult): RetentionResult {
    r.skipped = true;
    r.reason = 'another run in progress';
    return r;
  }
}

async function applyPolicies(
  db: Database,
  result: RetentionResult,
  startedAt: Date,
  limits: { batchSize: number; deadline: number; signal?: AbortSignal },
): Promise<void> {
  const policies = rowsOf<{
    tenant_id: string;
    archive_after_days: number | null;
    purge_after_days: number | null;
  }>(await db.execute(policiesQuery));
  // A value no date can express (the API validates, but settings are JSON) counts as unset
  // rather than failing the run, which would stall every tenant after this one.
  const cutoff = (days: number | null) => {
    if (days === null || days === undefined || !(days >= 0)) return null;
    const at = new Date(startedAt.getTime() - days * DAY_MS);
    return Number.isNaN(at.getTime()) ? null : at;
  };
  // The time limit counts only once a batch has changed rows, so even a run given no time makes
  // progress past tenants with nothing to do; shutdown stops it at the next batch regardless.
  let changed = 0;
  const mustStop = () =>
    limits.signal?.aborted === true || (changed > 0 && performance.now() >= limits.deadline);

  for (const [i, policy] of policies.entries()) {
    const tenant: TenantRetention = {
      tenant_id: policy.tenant_id,
      archived: 0,
      purged: 0,
      conversations_deleted: 0,
    };
    const purgeBefore = cutoff(policy.purge_after_days);
    const archiveBefore = cutoff(policy.archive_after_days);
    let stopped = false;
    // Purge first: archiving what is about to be deleted would be wasted writes.
    if (purgeBefore) {
      for (;;) {
        const { purged, conversations } = await purgeOnce(
          db,
          policy.tenant_id,
          purgeBefore,
          limits.batchSize,
        );
        tenant.purged += purged;
        tenant.conversations_deleted += conversations;
        changed += purged;
        if (purged < limits.batchSize) break;
        if (mustStop()) {
          stopped = true;
          break;
        }
      }
    }
    if (archiveBefore && !stopped) {
      for (;;) {
        const [row] = rowsOf<{ n: number }>(
          await db.execute(archiveBatch(policy.tenant_id, archiveBefore, limits.batchSize)),
        );
        const archived = Number(row?.n ?? 0);
        tenant.archived += archived;
        changed += archived;
        if (archived < limits.batchSize) break;
        if (mustStop()) {
          stopped = true;
          break;
        }
      }
    }
    result.tenants_processed += 1;
    result.archived += tenant.archived;
    result.purged += tenant.purged;
    result.conversations_deleted += tenant.conversations_deleted;
    if (tenant.archived + tenant.purged + tenant.conversations_deleted > 0) {
      result.tenants.push(tenant);
    }
    if (stopped) return;
    if (i < policies.length - 1 && mustStop()) return;
  }
  result.complete = true;
}

/**
 * One purge batch and, in the same transaction, the deletion of conversations it emptied: a
 * conversation row left without messages would otherwise keep its id (often meaningful to the
 * tenant) after the policy said its content must go.
 */
async function purgeOnce(
  db: Database,
  tenantId: string,
  before: Date,
  limit: number,
): Promise<{ purged: number; conversations: number }> {
  return db.transaction(async (tx) => {
    const touched = rowsOf<{ conversation_id: string; n: number }>(
      await tx.execute(purgeBatch(tenantId, before, limit)),
    );
    const purged = touched.reduce((sum, r) => sum + Number(r.n), 0);
    if (touched.length === 0) return { purged, conversations: 0 };
    const ids = touched.map((r) => r.conversation_id);
    await tx.execute(lockConversations(tenantId, ids));
    const [row] = rowsOf<{ n: number }>(await tx.execute(deleteEmptyConversations(tenantId, ids)));
    return { purged, conversations: Number(row?.n ?? 0) };
  });
}

async function store(db: Database, result: RetentionResult): Promise<void> {
  await db.execute(sql`
    insert into app_settings (key, value, updated_at)
    values (${LAST_RUN_SETTING}, ${JSON.stringify(result)}::jsonb, now())
    on conflict (key) do update set value = excluded.value, updated_at = excluded.updated_at`);
}
