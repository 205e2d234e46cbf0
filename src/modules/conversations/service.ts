import { and, asc, desc, eq, sql } from 'drizzle-orm';
import { conversations } from '../../db/schema';
import { rowsOf } from '../../db/raw';
import type { Database } from '../../db/types';
import type { CursorCodec } from '../../lib/cursor';
import { errors } from '../../lib/errors';
import type { ConversationView } from './model';
import { afterPosition, type KeysetPage, pageOf } from '../../lib/keyset';

/**
 * Count and first/last times of each conversation, read from the (tenant, conversation,
 * created_at) index per listed conversation: a page never scans the tenant's other messages,
 * and no counter row is updated on write.
 */
function summaryQuery(db: Database, tenantId: string, includeArchived: boolean) {
  const archivedFilter = includeArchived ? sql`` : sql`and m.archived = false`;
  return (
    db
      .select({
        id: conversations.id,
        createdAt: conversations.createdAt,
        messageCount: sql<number>`s.message_count`,
        firstAt: sql<string | null>`s.first_at`,
        lastAt: sql<string | null>`s.last_at`,
      })
      .from(conversations)
      // Literal, table-qualified SQL: see the note on unqualified columns in tenants/service.ts.
      .innerJoinLateral(
        sql`(select count(*)::int as message_count,
              to_char(min(m.created_at) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as first_at,
              to_char(max(m.created_at) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as last_at
           from messages m
           where m.tenant_id = "conversations"."tenant_id" and m.conversation_id = "conversations"."id"
           ${archivedFilter}) s`,
        sql`true`,
      )
      .where(eq(conversations.tenantId, tenantId))
      .$dynamic()
  );
}

type SummaryRow = Awaited<ReturnType<ReturnType<typeof summaryQuery>['execute']>>[number];

function toView(r: SummaryRow): ConversationView {
  return {
    id: r.id,
    message_count: Number(r.messageCount),
    first_message_at: r.firstAt,
    last_message_at: r.lastAt,
    created_at: r.createdAt.toISOString(),
  };
}

export async function listConversations(
  db: Database,
  cursors: CursorCodec,
  tenantId: string,
  q: { includeArchived: boolean; page: Omit<KeysetPage, 'scope'> },
) {
  const page: KeysetPage = {
    ...q.page,
    scope: `conversations|${q.page.order}|${q.includeArchived}`,
  };
  const after = page.cursor ? cursors.decode(tenantId, page.scope, page.cursor) : undefined;
  const dir = page.order === 'asc' ? asc : desc;
  const rows = await summaryQuery(db, tenantId, q.includeArchived)
    .where(
      and(
        eq(conversations.tenantId, tenantId),
        afterPosition(
          conversations.createdAt,
          conversations.id,
          after,
          page.order,
          (k) => sql`${k}::timestamptz`,
        ),
      ),
    )
    .orderBy(dir(conversations.createdAt), dir(conversations.id))
    .limit(page.limit + 1);
  const { items, nextCursor } = pageOf(rows, page, tenantId, cursors, (r) => ({
    k: r.createdAt.toISOString(),
    i: r.id,
  }));
  return { conversations: items.map(toView), next_cursor: nextCursor };
}

export async function getConversation(
  db: Database,
  tenantId: string,
  id: string,
  includeArchived: boolean,
): Promise<ConversationView> {
  const [row] = await summaryQuery(db, tenantId, includeArchived).where(
    and(eq(conversations.tenantId, tenantId), eq(conversations.id, id)),
  );
  if (!row) throw errors.notFound('Conversation not found');
  return toView(row);
}

/** Messages deleted per statement when a conversation is deleted. */
export const DELETE_BATCH = 1000;

/**
 * Deletes a conversation and all its messages. The messages go in batches of DELETE_BATCH, each
 * its own short statement, so deleting a very long conversation never holds its row locks (or
 * the GIN index's) for long, and stops between two batches when the request times out. The
 * conversation row goes last, and its cascade takes what a write in flight added meanwhile.
 * Interrupted (503 request_timeout), it leaves the conversation with the messages not yet
 * deleted, and a repeat finishes the job; only a 204 means all of it is gone.
 */
export async function deleteConversation(db: Database, tenantId: string, id: string) {
  const [exists] = await db
    .select({ id: conversations.id })
    .from(conversations)
    .where(and(eq(conversations.tenantId, tenantId), eq(conversations.id, id)));
  if (!exists) throw errors.notFound('Conversation not found');
  for (;;) {
    // message_search rows go with their messages (foreign key cascade). As in the retention
    // batches, the ids are folded into an array first: each statement reads at most
    // DELETE_BATCH entries of ix_messages_conversation and deletes by primary key, with no join
    // for the planner to turn into a scan of the tenant's messages.
    const [row] = rowsOf<{ n: number }>(
      await db.execute(sql`
        with d as (
          delete from messages where id = any(array(
            select id from messages
            where tenant_id = ${tenantId} and conversation_id = ${id}
            limit ${DELETE_BATCH}))
          returning 1)
        select count(*)::int as n from d`),
    );
    if (Number(row?.n ?? 0) < DELETE_BATCH) break;
  }
  const deleted = await db
    .delete(conversations)
    .where(and(eq(conversations.tenantId, tenantId), eq(conversations.id, id)))
    .returning({ id: conversations.id });
  if (deleted.length === 0) throw errors.notFound('Conversation not found');
}

/** Rows changed per statement when a whole conversation is archived or restored. */
const ARCHIVE_BATCH = 5000;

/**
 * Archives (or restores) every message of a conversation, in batches so a long conversation
 * never holds many row locks at once. Returns how many messages changed.
 */
export async function setConversationArchived(
  db: Database,
  tenantId: string,
  id: string,
  archived: boolean,
): Promise<number> {
  const [exists] = await db
    .select({ id: conversations.id })
    .from(conversations)
    .where(and(eq(conversations.tenantId, tenantId), eq(conversations.id, id)));
  if (!exists) throw errors.notFound('Conversation not found');
  let changed = 0;
  for (;;) {
    const rows = rowsOf<{ id: string }>(
      await db.execute(sql`
        update messages set archived = ${archived},
          archived_at = ${archived ? sql`now()` : sql`null`}
        where id in (
          select id from messages
          where tenant_id = ${tenantId} and conversation_id = ${id} and archived = ${!archived}
          limit ${ARCHIVE_BATCH})
        returning id`),
    );
    changed += rows.length;
    if (rows.length < ARCHIVE_BATCH) return changed;
  }
}
