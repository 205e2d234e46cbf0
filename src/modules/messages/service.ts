import { and, eq } from 'drizzle-orm';
import { type EmbeddingStatus, type MessageRole, type MessageRow, messages } from '../../db/schema';
import { errorCodeOf, FOREIGN_KEY_VIOLATION } from '../../db/errors';
import type { Database } from '../../db/types';
import type { CursorCodec, CursorPosition } from '../../lib/cursor';
import { notFound, validationFailed } from '../../lib/errors';
import { parseRequestTime } from '../../lib/time';
import { type KeysetPage, pageOf } from '../../lib/keyset';
import { rawQuery } from '../../db/raw';
import { MESSAGE_LIMITS, type MessageView } from './model';

export interface MessageInput {
  conversation_id: string;
  role: MessageRole;
  content: string;
  name?: string;
  tool_call_id?: string;
  tool_calls?: object[];
  metadata?: Record<string, unknown>;
  created_at?: string;
}

/** Where a message's embedding stands (from its search row). */
export interface EmbeddingInfo {
  status: EmbeddingStatus;
  error: string | null;
}

export function toMessageView(row: MessageRow, embedding: EmbeddingInfo): MessageView {
  return {
    id: row.id,
    conversation_id: row.conversationId,
    role: row.role,
    content: row.content,
    name: row.name,
    tool_call_id: row.toolCallId,
    tool_calls: row.toolCalls ?? null,
    metadata: row.metadata,
    created_at: row.createdAt.toISOString(),
    archived: row.archived,
    archived_at: row.archivedAt?.toISOString() ?? null,
    embedding_status: embedding.status,
    embedding_error: embedding.error,
  };
}

/**
 * A message with its search row, selected straight into the view's shape (times written by
 * PostgreSQL as `Date#toISOString` writes them), for list, get and export: rows come from the
 * driver as they are answered. Drizzle's select mapped each column of each row through its own
 * decoder, which on a page of 50 cost the server as much CPU as decoding the rows. A message
 * always has its search row (a trigger inserts it); 'disabled' covers the gap.
 */
const VIEW_FROM = `select m.id, m.conversation_id, m.role, m.content, m.name,
    m.tool_call_id, m.tool_calls, m.metadata,
    to_char(m.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as created_at,
    m.archived,
    to_char(m.archived_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as archived_at,
    coalesce(s.embedding_status, 'disabled') as embedding_status, s.embedding_error
  from messages m left join message_search s on s.message_id = m.id`;

/** Messages checked and turned into rows, ready to insert (ids and times already assigned). */
export interface PreparedMessages {
  tenantId: string;
  rows: ReturnType<typeof toRow>[];
  conversationIds: string[];
  now: number;
  /** What the index trigger sets: 'pending' when embeddings are on, 'disabled' otherwise. */
  embeddingStatus: EmbeddingStatus;
}

/**
 * Checks what the schema cannot (empty content, sizes, depth, time) and assigns ids and times,
 * without touching the database, so an invalid write is refused before any transaction opens.
 */
export function prepareMessages(
  tenantId: string,
  inputs: MessageInput[],
  embeddingStatus: EmbeddingStatus,
): PreparedMessages {
  const now = Date.now();
  const rows = inputs.map((input, index) =>
    toRow(tenantId, input, now, inputs.length > 1 ? index : null),
  );
  // Sorted so that writers creating the same new conversations take their locks in one order.
  const conversationIds = [...new Set(rows.map((r) => r.conversationId))].sort();
  return { tenantId, rows, conversationIds, now, embeddingStatus };
}

/**
 * Stores messages all or nothing in one statement (one round trip, one implicit transaction).
 * Each conversation row is inserted only if absent, in a CTE, so concurrent writers to one
 * conversation never queue on a row lock; the foreign key check at the end of the statement
 * sees the rows the CTE inserted. Conversations this process stored messages in lately skip
 * the CTE; a deleted one fails the foreign key check and is created again by the retry.
 */
export async function createMessages(
  db: Database,
  tenantId: string,
  inputs: MessageInput[],
  embeddingStatus: EmbeddingStatus,
): Promise<MessageView[]> {
  const prepared = prepareMessages(tenantId, inputs, embeddingStatus);
  const known = knownConversations(db);
  const keys = prepared.conversationIds.map((id) => `${tenantId}|${id}`);
  let stored: MessageView[];
  try {
    // A conversation this process has written to lately most likely still exists: insert the
    // messages alone and let the foreign key check confirm it.
    stored = await insertMessages(db, prepared, !keys.every((k) => known.has(k)));
  } catch (err) {
    // The conversation was deleted (between our insert-if-absent and the foreign key check, or
    // since it was remembered): one retry recreates it, as if the write had come a moment later.
    if (errorCodeOf(err) !== FOREIGN_KEY_VIOLATION) throw err;
    for (const k of keys) known.delete(k);
    stored = await insertMessages(db, prepared);
  }
  remember(known, keys);
  return stored;
}

/** Conversations a process remembers having written to; the oldest are forgotten first. */
const KNOWN_CONVERSATIONS_MAX = 10_000;
const knownByDb = new WeakMap<Database, Set<string>>();

function knownConversations(db: Database): Set<string> {
  let known = knownByDb.get(db);
  if (!known) {
    known = new Set();
    knownByDb.set(db, known);
  }
  return known;
}

function remember(known: Set<string>, keys: string[]): void {
  for (const k of keys) {
    if (known.has(k)) continue;
    if (known.size >= KNOWN_CONVERSATIONS_MAX) known.delete(known.values().next().value!);
    known.add(k);
  }
}

/**
 * Inserts prepared messages in one statement, without retrying: inside a transaction a failed
 * statement aborts the transaction, so only the caller can retry (the whole transaction).
 */
export async function insertMessages(
  db: Database,
  { tenantId, rows, conversationIds, now, embeddingStatus }: PreparedMessages,
  createConversations = true,
): Promise<MessageView[]> {
  await insertRows(db, tenantId, createConversations ? conversationIds : [], rows, now);
  // Exactly what was stored, in the order the caller sent.
  return rows.map((r) =>
    toMessageView(
      { ...r, archived: false, archivedAt: null },
      { status: embeddingStatus, error: null },
    ),
  );
}

/**
 * One statement, sent straight to the driver: drizzle's insert builder spent more CPU building
 * this statement and mapping its RETURNING rows than the rest of the request, and its `sql`
 * template and execute path still cost 0.05–0.1 ms of server CPU per create (see db/raw.ts).
 * Nothing is returned: every column's
 * value is known here (ids and times are assigned before the insert).
 */
async function insertRows(
  db: Database,
  tenantId: string,
  conversationIds: string[],
  rows: ReturnType<typeof toRow>[],
  now: number,
): Promise<void> {
  const params: unknown[] = [tenantId];
  const at = (value: unknown) => `$${params.push(value)}`;
  // Every parameter must appear in the text, so the start time only when it is used.
  const startedAt = conversationIds.length > 0 ? at(new Date(now).toISOString()) : '';
  const newConversations = conversationIds
    .map((id) => `($1::uuid, ${at(id)}, ${startedAt}::timestamptz)`)
    .join(', ');
  const values = rows
    .map(
      (r) =>
        `(${at(r.id)}::uuid, $1::uuid, ${at(r.conversationId)}, ${at(r.role)}, ${at(r.content)}, ` +
        `${at(r.name)}, ${at(r.toolCallId)}, ` +
        `${at(r.toolCalls === null ? null : JSON.stringify(r.toolCalls))}::jsonb, ` +
        `${at(JSON.stringify(r.metadata))}::jsonb, ${at(r.createdAt.toISOString())}::timestamptz)`,
    )
    .join(', ');
  const ensureConversations = newConversations
    ? `with ensure_conversations as (
      insert into conversations (tenant_id, id, created_at) values ${newConversations}
      on conflict do nothing) `
    : '';
  await rawQuery(
    db,
    `${ensureConversations}insert into messages (id, tenant_id, conversation_id, role, content, name, tool_call_id,
      tool_calls, metadata, created_at)
    values ${values}`,
    params,
    // Prepared statements for the single create; batches come in too many shapes to keep.
    { prepare: rows.length === 1 && conversationIds.length <= 1 },
  );
}

function toRow(tenantId: string, input: MessageInput, now: number, index: number | null) {
  const at = (field: string) => (index === null ? `/${field}` : `/messages/${index}/${field}`);
  if (input.content.length === 0 && !input.tool_calls?.length) {
    throw validationFailed('content may be empty only when tool_calls is present', [
      { in: 'body', path: at('content'), message: 'Expected a non-empty string' },
    ]);
  }
  if (input.tool_calls && jsonBytes(input.tool_calls) > MESSAGE_LIMITS.toolCallsMaxBytes) {
    throw validationFailed('tool_calls is too large', [
      {
        in: 'body',
        path: at('tool_calls'),
        message: `At most ${MESSAGE_LIMITS.toolCallsMaxBytes} bytes`,
      },
    ]);
  }
  const metadata = input.metadata ?? {};
  if (jsonBytes(metadata) > MESSAGE_LIMITS.metadataMaxBytes) {
    throw validationFailed('metadata is too large', [
      {
        in: 'body',
        path: at('metadata'),
        message: `At most ${MESSAGE_LIMITS.metadataMaxBytes} bytes serialised`,
      },
    ]);
  }
  if (depthOf(metadata) > MESSAGE_LIMITS.metadataMaxDepth) {
    throw validationFailed('metadata is nested too deeply', [
      {
        in: 'body',
        path: at('metadata'),
        message: `At most ${MESSAGE_LIMITS.metadataMaxDepth} levels`,
      },
    ]);
  }
  let createdAt = new Date(now);
  if (input.created_at !== undefined) {
    const parsed = parseRequestTime(input.created_at);
    if (parsed === null || parsed.getTime() > now) {
      throw validationFailed('created_at must be a valid time that is not in the future', [
        {
          in: 'body',
          path: at('created_at'),
          message: parsed === null ? 'Not a real calendar time' : 'Not in the future',
        },
      ]);
    }
    createdAt = parsed;
  }
  return {
    id: Bun.randomUUIDv7(),
    tenantId,
    conversationId: input.conversation_id,
    role: input.role,
    content: input.content,
    name: input.name ?? null,
    toolCallId: input.tool_call_id ?? null,
    toolCalls: input.tool_calls ?? null,
    metadata,
    createdAt,
  };
}

function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value));
}

/** Nesting depth of objects and arrays; a flat object is 1. */
function depthOf(value: unknown): number {
  if (value === null || typeof value !== 'object') return 0;
  let max = 0;
  for (const v of Object.values(value)) max = Math.max(max, depthOf(v));
  return max + 1;
}

export async function getMessage(db: Database, tenantId: string, id: string): Promise<MessageView> {
  const [row] = await rawQuery<MessageView>(
    db,
    `${VIEW_FROM} where m.tenant_id = $1::uuid and m.id = $2::uuid`,
    [tenantId, id],
  );
  if (!row) throw notFound('Message');
  return row;
}

export async function deleteMessage(db: Database, tenantId: string, id: string): Promise<void> {
  const deleted = await db
    .delete(messages)
    .where(and(eq(messages.tenantId, tenantId), eq(messages.id, id)))
    .returning({ id: messages.id });
  if (deleted.length === 0) throw notFound('Message');
}

export interface ListMessagesQuery {
  conversationId?: string;
  includeArchived: boolean;
  page: Omit<KeysetPage, 'scope'>;
}

/** A page of a tenant's messages (optionally of one conversation) in time order. */
export async function listMessages(
  db: Database,
  cursors: CursorCodec,
  tenantId: string,
  q: ListMessagesQuery,
): Promise<{ messages: MessageView[]; next_cursor: string | null }> {
  const page: KeysetPage = {
    ...q.page,
    scope: `messages|${q.conversationId ?? '*'}|${q.page.order}|${q.includeArchived}`,
  };
  const after = page.cursor ? cursors.decode(tenantId, page.scope, page.cursor) : undefined;
  const rows = await messagesPage(db, tenantId, {
    conversationId: q.conversationId,
    includeArchived: q.includeArchived,
    after,
    order: page.order,
    limit: page.limit + 1,
  });
  const { items, nextCursor } = pageOf(rows, page, tenantId, cursors, (r) => ({
    k: r.created_at,
    i: r.id,
  }));
  return { messages: items, next_cursor: nextCursor };
}

/**
 * Up to `limit` of a tenant's messages (of one conversation, when given) in time order, strictly
 * after `after`: one keyset range of ix_messages_conversation or ix_messages_tenant_created,
 * never OFFSET. For list pages and the export.
 */
export async function messagesPage(
  db: Database,
  tenantId: string,
  q: {
    conversationId?: string;
    includeArchived: boolean;
    after?: CursorPosition;
    order: 'asc' | 'desc';
    limit: number;
  },
): Promise<MessageView[]> {
  const params: unknown[] = [tenantId];
  const at = (value: unknown) => `$${params.push(value)}`;
  let where = 'm.tenant_id = $1::uuid';
  if (q.conversationId !== undefined) where += ` and m.conversation_id = ${at(q.conversationId)}`;
  if (!q.includeArchived) where += ' and not m.archived';
  const asc = q.order === 'asc';
  if (q.after) {
    where += ` and (m.created_at, m.id) ${asc ? '>' : '<'} (${at(q.after.k)}::timestamptz, ${at(q.after.i)}::uuid)`;
  }
  const order = asc ? 'm.created_at, m.id' : 'm.created_at desc, m.id desc';
  return rawQuery<MessageView>(
    db,
    `${VIEW_FROM} where ${where} order by ${order} limit ${at(q.limit)}`,
    params,
  );
}
