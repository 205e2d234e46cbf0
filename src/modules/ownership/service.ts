import { and, asc, eq, gt, sql } from 'drizzle-orm';
import { rowsOf } from '../../db/raw';
import { apiKeys, conversations, tenants } from '../../db/schema';
import type { Database } from '../../db/types';
import type { CursorPosition } from '../../lib/cursor';
import { errors } from '../../lib/errors';
import { messagesPage } from '../messages/service';
import { notifyKeyChange } from '../../auth/resolver';
import { getTenant } from '../tenants/service';

/** Rows read per query of an export: enough to amortise round trips, small enough to stream. */
export const EXPORT_CHUNK_ROWS = 1000;
/** Rows deleted per statement (each its own short transaction) when a tenant is deleted. */
export const DELETE_BATCH_ROWS = 5000;

/**
 * Checks that the tenant exists, then returns its export as NDJSON lines (each ending in a
 * newline), read lazily: a line is produced only when the consumer asks for it, and at most one
 * chunk of rows is in memory, whatever the tenant's size. The checking is eager so that an
 * unknown tenant is a 404 (or exit 1) before any output; the reading is not a snapshot (each
 * chunk is its own statement, so no transaction stays open while a slow consumer reads), and
 * the closing `end` line carries the counts actually written, so a consumer can tell a complete
 * export from a cut one.
 */
export async function openExport(db: Database, tenantId: string): Promise<AsyncGenerator<string>> {
  const tenant = await getTenant(db, tenantId);
  // The key prefix is part of a credential: not something to hand over with the data.
  const { api_key_prefix: _prefix, ...view } = tenant;
  return exportLines(db, tenantId, { type: 'tenant', ...view });
}

async function* exportLines(db: Database, tenantId: string, head: object) {
  const line = (value: object) => `${JSON.stringify(value)}\n`;
  yield line(head);

  let conversationCount = 0;
  let lastConversation: string | undefined;
  for (;;) {
    const rows = await db
      .select({ id: conversations.id, createdAt: conversations.createdAt })
      .from(conversations)
      .where(
        and(
          eq(conversations.tenantId, tenantId),
          lastConversation === undefined ? undefined : gt(conversations.id, lastConversation),
        ),
      )
      .orderBy(asc(conversations.id))
      .limit(EXPORT_CHUNK_ROWS);
    for (const r of rows) {
      yield line({ type: 'conversation', id: r.id, created_at: r.createdAt.toISOString() });
    }
    conversationCount += rows.length;
    if (rows.length < EXPORT_CHUNK_ROWS) break;
    lastConversation = rows[rows.length - 1]!.id;
  }

  let messageCount = 0;
  let after: CursorPosition | undefined;
  for (;;) {
    // Keyset over ix_messages_tenant_created (a row comparison, which the index can range-scan):
    // every chunk is one index range, never OFFSET.
    const rows = await messagesPage(db, tenantId, {
      includeArchived: true,
      after,
      order: 'asc',
      limit: EXPORT_CHUNK_ROWS,
    });
    for (const r of rows) {
      yield line({ type: 'message', ...r });
    }
    messageCount += rows.length;
    if (rows.length < EXPORT_CHUNK_ROWS) break;
    const last = rows[rows.length - 1]!;
    after = { k: last.created_at, i: last.id };
  }

  yield line({ type: 'end', conversations: conversationCount, messages: messageCount });
}

/**
 * The export lines as a byte stream that reads the next chunk only when the last is taken.
 * A failure midway ends the stream without its `end` line; `onError` is told, since by then the
 * response has left the error handling of the app.
 */
export function ndjsonStream(
  lines: AsyncGenerator<string>,
  onError: (err: unknown) => void,
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const next = await lines.next();
          if (next.done) controller.close();
          else controller.enqueue(encoder.encode(next.value));
        } catch (err) {
          onError(err);
          controller.error(err);
        }
      },
      // A client that goes away stops the reading at the next chunk boundary.
      async cancel() {
        await lines.return(undefined);
      },
    },
    // Pull-based with no read-ahead beyond one line: memory stays flat for a slow reader.
    { highWaterMark: 1 },
  );
}

/** Rows removed by a tenant deletion (of this run; an earlier interrupted run's are not counted). */
export interface DeletedCounts {
  messages: number;
  conversations: number;
  idempotency_keys: number;
  api_keys: number;
}

/**
 * Deletes a tenant and everything it owns. First, in one short committed transaction, the
 * tenant is disabled and its keys deleted, so `revoke` (which drops cached keys) makes them
 * fail at once here, and the notification sent on its commit on every other instance; then the
 * data goes in batches of DELETE_BATCH_ROWS, each its own statement, so no lock or transaction
 * is held long and writers of other tenants never wait behind it. The tenant row goes last: an
 * interrupted deletion leaves a disabled tenant that a repeat call finishes. Rows a write in
 * flight adds meanwhile are removed by the cascades of that last delete.
 */
export async function deleteTenant(
  db: Database,
  tenantId: string,
  revoke: (tenantId: string) => void,
): Promise<DeletedCounts> {
  const revokedKeys = await db.transaction(async (tx) => {
    const [row] = await tx
      .update(tenants)
      .set({ disabled: true, updatedAt: sql`now()` })
      .where(eq(tenants.id, tenantId))
      .returning({ id: tenants.id });
    if (!row) throw errors.notFound('Tenant not found');
    const keys = await tx
      .delete(apiKeys)
      .where(eq(apiKeys.tenantId, tenantId))
      .returning({ id: apiKeys.id });
    await notifyKeyChange(tx, tenantId);
    return keys.length;
  });
  revoke(tenantId);

  // message_search rows go with their messages (foreign key cascade).
  const counts: DeletedCounts = {
    messages: await deleteInBatches(
      db,
      sql`delete from messages where id in (
        select id from messages where tenant_id = ${tenantId} limit ${DELETE_BATCH_ROWS})`,
    ),
    conversations: await deleteInBatches(
      db,
      sql`delete from conversations where tenant_id = ${tenantId} and id in (
        select id from conversations where tenant_id = ${tenantId} limit ${DELETE_BATCH_ROWS})`,
    ),
    idempotency_keys: await deleteInBatches(
      db,
      sql`delete from idempotency_keys where tenant_id = ${tenantId} and key in (
        select key from idempotency_keys where tenant_id = ${tenantId} limit ${DELETE_BATCH_ROWS})`,
    ),
    api_keys: revokedKeys,
  };
  // Cascades take whatever a concurrent write (or key rotation) added since.
  await db.delete(tenants).where(eq(tenants.id, tenantId));
  return counts;
}

/** Runs a batch delete until a batch comes back short; returns the rows removed. */
async function deleteInBatches(db: Database, statement: ReturnType<typeof sql>): Promise<number> {
  let total = 0;
  for (;;) {
    const [row] = rowsOf<{ n: number }>(
      await db.execute(sql`with d as (${statement} returning 1) select count(*)::int as n from d`),
    );
    const n = Number(row?.n ?? 0);
    total += n;
    if (n < DELETE_BATCH_ROWS) return total;
  }
}
