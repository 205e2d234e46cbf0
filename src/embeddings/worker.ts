import { type SQL, sql } from 'drizzle-orm';
import { BrokenCircuitError } from 'cockatiel';
import type { Config } from '../config';
import { rowsOf } from '../db/raw';
import type { Database } from '../db/types';
import type { Logger } from '../logger';
import type { EmbeddingClient } from './client';
import {
  attemptsExhausted,
  classifyFailure,
  type EmbeddingFailure,
  formatFailure,
  isInputRejected,
} from './failures';
import { vectorLiteral } from './types';

/** A claimed message: `attempts` identifies this claim, so a stale worker cannot overwrite. */
interface Claimed {
  id: string;
  attempts: number;
  /** Failed attempts charged to this message so far (EMBEDDING_MAX_ATTEMPTS). */
  failures: number;
  /** It failed before (it has an embedding_error): it is sent alone, never in a batch. */
  retry: boolean;
  text: string;
}

/** A claimed message going back to the queue, and what to record as its error (null: keep). */
interface Returned {
  message: Claimed;
  error: string | null;
}

/**
 * How long a message waits before any worker takes it again after a failure that is not its
 * own (an outage), at most; never longer than the breaker's cool-down, after which the service
 * may be back.
 */
const MAX_RELEASE_DELAY_MS = 5000;
/** First wait after a message's own failed attempt; doubles with each further one. */
const ATTEMPT_BACKOFF_BASE_MS = 1000;
/** Longest wait between two attempts of one message. */
const ATTEMPT_BACKOFF_MAX_MS = 30_000;

/**
 * Embeds pending messages in the background. Work is claimed with FOR UPDATE SKIP LOCKED and
 * the claim (a lease) is committed before the embedding service is called, so no transaction
 * or connection is held across the external call, several instances share the backlog without
 * doing anything twice, and the backlog survives restarts (it is the database).
 *
 * Fresh messages go in batches. A message whose batch failed is afterwards sent alone, and a
 * failure counts against it (one of EMBEDDING_MAX_ATTEMPTS) only when the provider was shown to
 * work both before and after it in the same round: by another call of the round, or by a
 * control call (checkProvider). An outage therefore counts against nobody: it opens the breaker
 * and the messages wait. A refused input (HTTP 400/413/422) fails its message at once.
 */
export class EmbeddingWorker {
  private stopped = true;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;
  private abort = new AbortController();

  constructor(
    private readonly db: Database,
    private readonly client: EmbeddingClient,
    private readonly config: Config,
    private readonly logger: Logger,
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.abort = new AbortController();
    this.loop = this.run();
  }

  /**
   * Stops now: the embedding call in flight and any retry to come are abandoned, and the claimed
   * messages are given back at once (pending, claim cleared, nothing counted against them), so
   * another instance takes them without waiting for the lease. A database write in progress is
   * finished first.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    this.wake?.();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let claimed = 0;
      try {
        if (!this.client.isCoolingDown()) claimed = await this.runOnce();
      } catch (err) {
        // The database is away or the claim failed: wait and try again. The log's error
        // serializer writes its class, SQLSTATE and statement: a query error's message holds
        // its SQL and parameters.
        this.logger.warn({ err }, 'embedding worker iteration failed');
      }
      // A full batch means more is waiting: go on at once. Otherwise poll.
      if (claimed < this.config.EMBEDDING_BATCH_SIZE)
        await this.sleep(this.config.EMBEDDING_POLL_INTERVAL_MS);
    }
  }

  /** Claims, embeds and stores one batch; returns how many messages were claimed. */
  async runOnce(): Promise<number> {
    const signal = this.abort.signal;
    if (signal.aborted) return 0;
    const claimed = await this.claim();
    if (claimed.length === 0) return 0;
    if (signal.aborted) {
      await this.giveBack(claimed.map((message) => ({ message, error: null })));
      return claimed.length;
    }
    // Messages sent alone must all be done well within the lease, or another worker takes them.
    const deadline = Date.now() + this.config.EMBEDDING_LEASE_MS / 2;
    const fresh = claimed.filter((m) => !m.retry);
    const alone: Returned[] = claimed
      .filter((m) => m.retry)
      .map((message) => ({ message, error: null }));
    // Whether the provider has shown in this round that it works.
    let working = false;
    if (fresh.length > 0) {
      try {
        const vectors = await this.client.embedBatch(
          fresh.map((m) => m.text),
          signal,
        );
        await this.store(fresh, vectors);
        working = true;
      } catch (err) {
        if (signal.aborted) {
          await this.giveBack(claimed.map((message) => ({ message, error: null })));
          return claimed.length;
        }
        if (err instanceof BrokenCircuitError) {
          // Nothing reached the provider: the batch waits, unchanged.
          await this.release(claimed.map((message) => ({ message, error: null })));
          return claimed.length;
        }
        // A refusal is an answer: the provider works and one of the inputs is the trouble.
        working = isInputRejected(err);
        const error = formatFailure(classifyFailure(err));
        alone.unshift(...fresh.map((message) => ({ message, error })));
      }
    }
    if (alone.length === 0) return claimed.length;
    if (!working) {
      const check = await this.client.checkProvider(signal);
      if (signal.aborted) {
        await this.giveBack(alone);
        return claimed.length;
      }
      if (!check.ok) {
        // The provider fails for everyone: an outage, counted against no message.
        const error = formatFailure(classifyFailure(check.error));
        await this.release(alone.map((r) => ({ message: r.message, error: r.error ?? error })));
        return claimed.length;
      }
    }
    await this.oneByOne(alone, deadline, signal);
    return claimed.length;
  }

  /**
   * Embeds each message with a call of its own. A failure counts against its message only once
   * the provider has also worked after it (a later call of the round, or a control call at the
   * end): one that went down in the middle of the round charges nobody.
   */
  private async oneByOne(queue: Returned[], deadline: number, signal: AbortSignal): Promise<void> {
    /** Failures waiting for that proof. */
    let owed: { message: Claimed; failure: EmbeddingFailure }[] = [];
    const unpaid = (): Returned[] =>
      owed.map(({ message, failure }) => ({ message, error: formatFailure(failure) }));
    const settle = async () => {
      for (const { message, failure } of owed) await this.charge(message, failure);
      owed = [];
    };
    for (const [i, item] of queue.entries()) {
      const { message } = item;
      if (signal.aborted || Date.now() > deadline) {
        await this.giveBack([...unpaid(), ...queue.slice(i)]);
        return;
      }
      try {
        const vector = await this.client.embedOne(message.text, signal);
        await this.store([message], [vector]);
        await settle();
      } catch (err) {
        if (signal.aborted) {
          await this.giveBack([...unpaid(), ...queue.slice(i)]);
          return;
        }
        if (err instanceof BrokenCircuitError) {
          // The breaker opened meanwhile: the provider went down, which is nobody's attempt.
          await this.release([...unpaid(), ...queue.slice(i)]);
          return;
        }
        const failure = classifyFailure(err);
        if (isInputRejected(err)) {
          // A refusal is an answer, so the provider works: what failed before is owed.
          await this.fail(message, failure);
          await settle();
        } else {
          owed.push({ message, failure });
        }
      }
    }
    if (owed.length === 0) return;
    const check = await this.client.checkProvider(signal);
    if (signal.aborted) await this.giveBack(unpaid());
    else if (check.ok) await settle();
    else await this.release(unpaid());
  }

  private async claim(): Promise<Claimed[]> {
    return rowsOf<Claimed>(
      await this.db.execute(
        claimStatement(this.config.EMBEDDING_BATCH_SIZE, this.config.EMBEDDING_LEASE_MS),
      ),
    );
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

  /** The message failed on its own: one attempt more, and `failed` when none are left. */
  private async charge(message: Claimed, failure: EmbeddingFailure): Promise<void> {
    const failures = message.failures + 1;
    if (failures >= this.config.EMBEDDING_MAX_ATTEMPTS) {
      await this.fail(message, attemptsExhausted(failures, failure), failures);
      return;
    }
    const delayMs = Math.min(
      ATTEMPT_BACKOFF_MAX_MS,
      Math.min(ATTEMPT_BACKOFF_BASE_MS, this.config.EMBEDDING_BREAKER_COOLDOWN_MS) *
        2 ** (failures - 1),
    );
    await this.db.execute(sql`
      update message_search set failures = ${failures},
        embedding_error = ${formatFailure(failure)},
        lease_until = now() + make_interval(secs => ${delayMs / 1000})
      where message_id = ${message.id} and attempts = ${message.attempts}
        and embedding_status = 'pending'`);
  }

  private async fail(
    message: Claimed,
    failure: EmbeddingFailure,
    failures = message.failures,
  ): Promise<void> {
    await this.db.execute(sql`
      update message_search set embedding_status = 'failed',
        embedding_error = ${formatFailure(failure)}, failures = ${failures}, lease_until = null
      where message_id = ${message.id} and attempts = ${message.attempts}
        and embedding_status = 'pending'`);
    this.logger.warn(
      { message_id: message.id, category: failure.category, attempts: failures },
      'message not embedded',
    );
  }

  /** Gives messages back after a failure that is not theirs; they are taken again shortly. */
  private release(items: Returned[]): Promise<void> {
    const delayMs = Math.min(MAX_RELEASE_DELAY_MS, this.config.EMBEDDING_BREAKER_COOLDOWN_MS);
    return this.putBack(items, delayMs);
  }

  /** Gives messages back at once, at shutdown: any worker may take them right away. */
  private giveBack(items: Returned[]): Promise<void> {
    return this.putBack(items, 0);
  }

  private async putBack(items: Returned[], delayMs: number): Promise<void> {
    if (items.length === 0) return;
    const rows = items.map(
      ({ message, error }) => sql`(${message.id}::uuid, ${message.attempts}::int, ${error}::text)`,
    );
    await this.db.execute(sql`
      update message_search s
      set lease_until = ${delayMs > 0 ? sql`now() + make_interval(secs => ${delayMs / 1000})` : sql`null`},
          embedding_error = coalesce(v.error, s.embedding_error)
      from (values ${sql.join(rows, sql`, `)}) as v(id, attempts, error)
      where s.message_id = v.id and s.attempts = v.attempts and s.embedding_status = 'pending'`);
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
    returning s.message_id as id, s.attempts as attempts, s.failures as failures,
      s.embedding_error is not null as retry,
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
        lease_until = null, failures = 0
      where embedding_status = 'failed' ${tenantId ? sql`and tenant_id = ${tenantId}` : sql``}
      returning message_id as id`),
  );
  return rows.length;
}
