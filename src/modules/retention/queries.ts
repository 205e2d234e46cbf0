import { type SQL, sql } from 'drizzle-orm';

/**
 * The statements the retention job runs, apart from the job so that a test can EXPLAIN exactly
 * these. Each batch picks its rows in an index-ordered subquery folded into an array, so the
 * outer statement is a primary-key lookup of at most `limit` ids: the planner has no join to
 * misjudge into a scan of the messages table, whatever the table's size.
 */

/** Tenants with a retention policy; a setting that is not a number counts as unset. */
export const policiesQuery = sql`
  select id as tenant_id,
    case when jsonb_typeof(settings->'archive_after_days') = 'number'
      then (settings->>'archive_after_days')::float8 end as archive_after_days,
    case when jsonb_typeof(settings->'purge_after_days') = 'number'
      then (settings->>'purge_after_days')::float8 end as purge_after_days
  from tenants
  where settings ? 'archive_after_days' or settings ? 'purge_after_days'
  order by id`;

/**
 * Deletes up to `limit` of a tenant's messages created before `cutoff`, oldest first
 * (ix_messages_tenant_created), and names the conversations they were in, with counts.
 */
export function purgeBatch(tenantId: string, cutoff: Date, limit: number): SQL {
  return sql`
    with gone as (
      delete from messages
      where id = any(array(
        select id from messages
        where tenant_id = ${tenantId} and created_at < ${cutoff.toISOString()}::timestamptz
        order by created_at
        limit ${limit}))
      returning conversation_id)
    select conversation_id, count(*)::int as n from gone group by conversation_id`;
}

/**
 * Archives up to `limit` of a tenant's unarchived messages created before `cutoff`, oldest
 * first (ix_messages_tenant_archived); returns how many.
 */
export function archiveBatch(tenantId: string, cutoff: Date, limit: number): SQL {
  return sql`
    with done as (
      update messages set archived = true, archived_at = now()
      where id = any(array(
        select id from messages
        where tenant_id = ${tenantId} and archived = false
          and created_at < ${cutoff.toISOString()}::timestamptz
        order by created_at
        limit ${limit}))
        and archived = false
      returning 1)
    select count(*)::int as n from done`;
}

/**
 * Locks the conversations a purge batch touched, so that no message can be added to them until
 * the transaction ends. A writer mid-insert holds a key-share lock on its conversation, so this
 * waits for it to commit; the next statement (a new snapshot) then sees its message.
 */
export function lockConversations(tenantId: string, ids: string[]): SQL {
  return sql`
    select id from conversations
    where tenant_id = ${tenantId} and id in ${ids}
    order by id
    for update`;
}

/** Deletes those of the given conversations that have no message left (ix_messages_conversation). */
export function deleteEmptyConversations(tenantId: string, ids: string[]): SQL {
  return sql`
    with gone as (
      delete from conversations c
      where c.tenant_id = ${tenantId} and c.id in ${ids}
        and not exists (
          select 1 from messages m
          where m.tenant_id = c.tenant_id and m.conversation_id = c.id)
      returning 1)
    select count(*)::int as n from gone`;
}
