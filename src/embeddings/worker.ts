import { type SQL, sql } from 'drizzle-orm';
import type { Config } from '../config';
import { rowsOf } from '../db/migrate';
import type { Database } from '../db/types';
import type { Logger } from '../logger';
import { describe, type EmbeddingClient, EmbeddingHttpError } from './client';
import { vectorLiteral } from './types';

/** A claimed message: `attempts` identifies this claim, so a stale worker cannot overwrite. */
interface Claimed {
  id: string;
  attempts: number;
  text: string;
}

/**
 * How long a batch that failed transiently waits before any worker takes it again, at most;
 * never longer than the breaker's cool-down, after which the service may be back.
 */
const MAX_RELEASE_DELAY_MS = 5000;

/**
 * Embeds pending messages in the background. Work is claimed with FOR UPDATE SKIP LOCKED and
 * the claim (a lease) is committed before the embedding service is called, so no transaction
 * or connection is held across the external call, several instances share the backlog without
 * doing anything twice, and the backlog survives restarts (it is the database). Only a
 * permanent refusal of an input marks a message `failed`; outages leave it pending.
 */
export class EmbeddingWorker {
  private stopped = true;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;

  constructor(
    private readonly db: Database,
    private readonly client: EmbeddingClient,
    private readonly config: Config,
    private readonly logger: Logger,
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.loop = this.run();
  }

  /** Stops at a safe point: the batch in progress is finished (or released) first. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let claimed = 0;
      try {
        if (!this.client.isCoolingDown()) claimed = await this.runOnce();
      } catch (err) {
        // The database is away or the claim failed: wait and try again.
        this.logger.warn({ err }, 'embedding worker iteration failed');
      }
      // A full batch means more is waiting: go on at once. Otherwise poll.
      if (claimed < this.config.EMBEDDING_BATCH_SIZE)
        await this.sleep(this.config.EMBEDDING_POLL_INTERVAL_MS);
    }
  }

  /** Claims, embeds and stores one batch; returns how many messages were claimed. */
  async runOnce(): Promise<number> {
    const batch = await this.claim();
    if (batch.length === 0) return 0;
    try {
      const vectors = await this.client.embedBatch(batch.map((m) => m.text));
      await this.store(batch, vectors);
    } catch (err) {
      if (err instanceof EmbeddingHttpError && err.inputRejected) await this.oneByOne(batch);
      else await this.release(batch, describe(err));
    }
    return batch.length;
  }

  private async claim(): Promise<Claimed[]> {
    return rowsOf<Claimed>(
      await this.db.execute(
        claimStatement(this.config.EMBEDDING_BATCH_SIZE, this.config.EMBEDDING_LEASE_MS),
      ),
    );
  }

  /** A batch had an input the provider refuses: find it, and embed the others. */
  private async oneByOne(batch: Claimed[]): Promise<void> {
    for (const message of batch) {
      try {
        const [vector] = await this.client.embedBatch([message.text]);
        await this.store([message], [vector!]);
      } catch (err) {
        if (err instanceof EmbeddingHttpError && err.inputRejected) {
          await this.fail(message, `The embedding provider refused this message: ${err.message}`);
        } else {
          await this.release([message], describe(err));
        }
      }
    }
  }

  private async store(batch: Claimed[], vectors: number[][]): Promise<void> {
    const rows = batch.map(
      (m, i) => sql`(${m.id}::uuid, ${vectorLiteral(vectors[i]!)}::vector, ${m.attempts}::int)`,
    );
    await this.db.execute(sql`
      update message_search s
      set embedding = v.embedding, embedding_status = 'ready', embedding_error = null,
          lease_until = null, embedded_at = now()
      from (values ${sql.join(rows, sql`, `)}) as v(id, embedding, attempts)
      where s.message_id = v.id and s.attempts = v.attempts and s.embedding_status = 'pending'`);
  }

  private async fail(message: Claimed, error: string): Promise<void> {
    await this.db.execute(sql`
      update message_search set embedding_status = 'failed', embedding_error = ${error},
        lease_until = null
      where message_id = ${message.id} and attempts = ${message.attempts}
        and embedding_status = 'pending'`);
  }

  /** Gives a batch back after a transient failure; it is retried after a short delay. */
  private async release(batch: Claimed[], error: string): Promise<void> {
    const ids: SQL[] = batch.map((m) => sql`${m.id}::uuid`);
    await this.db.execute(sql`
      update message_search
      set lease_until = now() + make_interval(secs => ${Math.min(MAX_RELEASE_DELAY_MS, this.config.EMBEDDING_BREAKER_COOLDOWN_MS) / 1000}),
          embedding_error = ${error}
      where message_id in (${sql.join(ids, sql`, `)}) and embedding_status = 'pending'`);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}

/**
 * Claims up to `batchSize` pending messages for `leaseMs` and returns their text. The oldest
 * come first through the partial index of pending rows; messages are read by primary key.
 */
export function claimStatement(batchSize: number, leaseMs: number): SQL {
  return sql`
    update message_search s
    set lease_until = now() + make_interval(secs => ${leaseMs / 1000}),
        attempts = s.attempts + 1
    from messages m
    where m.id = s.message_id and s.message_id in (
      select message_id from message_search
      where embedding_status = 'pending' and (lease_until is null or lease_until < now())
      order by message_id
      limit ${batchSize}
      for update skip locked)
    returning s.message_id as id, s.attempts as attempts,
      coalesce(nullif(m.content, ''), m.tool_calls::text, '') as text`;
}

/** The backlog query of health and metrics; it reads only the search side table. */
export function backlogStatement(): SQL {
  // The age comes from the UUIDv7 of the oldest pending message: its creation time in the
  // service, not its (possibly imported) created_at.
  return sql`
    select
      (select count(*)::int from message_search where embedding_status = 'pending') as pending,
      (select ('x' || substr(replace(message_id::text, '-', ''), 1, 12))::bit(48)::bigint
         from message_search where embedding_status = 'pending'
         order by message_id limit 1)::text as oldest_ms,
      (select count(*)::int from message_search where embedding_status = 'failed') as failed`;
}

/** Size and age of the embedding backlog, for health and metrics. */
export async function backlog(
  db: Database,
): Promise<{ pending: number; oldestSeconds: number; failed: number }> {
  const [row] = rowsOf<{ pending: number; oldest_ms: string | null; failed: number }>(
    await db.execute(backlogStatement()),
  );
  const oldest = row?.oldest_ms ? Number(row.oldest_ms) : null;
  return {
    pending: row?.pending ?? 0,
    oldestSeconds: oldest ? Math.max(0, (Date.now() - oldest) / 1000) : 0,
    failed: row?.failed ?? 0,
  };
}

/** Puts failed messages (of one tenant, or all) back in the queue; returns how many. */
export async function requeueFailed(db: Database, tenantId?: string): Promise<number> {
  const rows = rowsOf<{ id: string }>(
    await db.execute(sql`
      update message_search set embedding_status = 'pending', embedding_error = null,
        lease_until = null
      where embedding_status = 'failed' ${tenantId ? sql`and tenant_id = ${tenantId}` : sql``}
      returning message_id as id`),
  );
  return rows.length;
}
