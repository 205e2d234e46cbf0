import { sql } from 'drizzle-orm';
import {
  boolean,
  check,
  customType,
  foreignKey,
  index,
  integer,
  json,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  uuid,
} from 'drizzle-orm/pg-core';

/** Millisecond precision, so a timestamp round-trips through JSON and cursors unchanged. */
const ts = (name: string) => timestamp(name, { withTimezone: true, precision: 3, mode: 'date' });

export const tenants = pgTable('tenants', {
  id: uuid('id').primaryKey(),
  name: text('name').notNull(),
  disabled: boolean('disabled').notNull().default(false),
  /** Per-tenant settings later features add (retention, rate limits) without a migration each. */
  settings: jsonb('settings').$type<Record<string, unknown>>().notNull().default({}),
  createdAt: ts('created_at').notNull().defaultNow(),
  updatedAt: ts('updated_at').notNull().defaultNow(),
});

/**
 * API keys live apart from tenants so that a rotation can keep the previous key working for a
 * grace period. Only the SHA-256 of a key is stored; the prefix is for display.
 */
export const apiKeys = pgTable(
  'api_keys',
  {
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    keyHash: text('key_hash').notNull().unique('uq_api_keys_key_hash'),
    keyPrefix: text('key_prefix').notNull(),
    createdAt: ts('created_at').notNull().defaultNow(),
    /** Null while the key is current; set when it is rotated out (now, or after a grace period). */
    expiresAt: ts('expires_at'),
  },
  (t) => [index('ix_api_keys_tenant').on(t.tenantId)],
);

/**
 * One row per conversation, inserted only when absent (`ON CONFLICT DO NOTHING`), so writers to
 * the same conversation never wait on each other. Counts and first/last timestamps are derived
 * from the messages index, never kept in a hot counter row.
 */
export const conversations = pgTable(
  'conversations',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    id: text('id').notNull(),
    createdAt: ts('created_at').notNull().defaultNow(),
  },
  (t) => [primaryKey({ name: 'pk_conversations', columns: [t.tenantId, t.id] })],
);

export const messageRoles = ['user', 'assistant', 'system', 'tool'] as const;
export type MessageRole = (typeof messageRoles)[number];

export const messages = pgTable(
  'messages',
  {
    /** UUIDv7: time-ordered, so inserts append to the primary key index. */
    id: uuid('id').primaryKey(),
    tenantId: uuid('tenant_id').notNull(),
    conversationId: text('conversation_id').notNull(),
    role: text('role', { enum: messageRoles }).notNull(),
    content: text('content').notNull(),
    name: text('name'),
    toolCallId: text('tool_call_id'),
    toolCalls: jsonb('tool_calls').$type<unknown[]>(),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: ts('created_at').notNull().defaultNow(),
    archived: boolean('archived').notNull().default(false),
    archivedAt: ts('archived_at'),
  },
  (t) => [
    foreignKey({
      name: 'fk_messages_conversation',
      columns: [t.tenantId, t.conversationId],
      foreignColumns: [conversations.tenantId, conversations.id],
    }).onDelete('cascade'),
    // Hot path: a conversation's page in time order, and its count/first/last.
    index('ix_messages_conversation').on(t.tenantId, t.conversationId, t.createdAt, t.id),
    // A tenant's messages across conversations in time order.
    index('ix_messages_tenant_created').on(t.tenantId, t.createdAt, t.id),
    // Retention: global age scans, archived-row scans, and a tenant's unarchived rows by age.
    index('ix_messages_created_at').on(t.createdAt),
    index('ix_messages_archived').on(t.archived, t.createdAt),
    index('ix_messages_tenant_archived').on(t.tenantId, t.archived, t.createdAt),
    check('ck_messages_role', sql`${t.role} IN ('user', 'assistant', 'system', 'tool')`),
  ],
);

/**
 * Idempotency-Key of a write, kept for IDEMPOTENCY_TTL_SECONDS with the request's hash and the
 * response to replay. The row is claimed, the write done and the response recorded in one
 * transaction, so a committed row always has its response and its messages.
 */
export const idempotencyKeys = pgTable(
  'idempotency_keys',
  {
    tenantId: uuid('tenant_id')
      .notNull()
      .references(() => tenants.id, { onDelete: 'cascade' }),
    key: text('key').notNull(),
    /** SHA-256 of method, route and the canonical JSON of the body. */
    requestHash: text('request_hash').notNull(),
    /** Null only inside the claiming transaction, between the claim and the write. */
    responseStatus: integer('response_status'),
    // json, not jsonb: json keeps the text as written, so a replay is byte-for-byte the original
    // response; jsonb would reorder keys.
    responseBody: json('response_body'),
    createdAt: ts('created_at').notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ name: 'pk_idempotency_keys', columns: [t.tenantId, t.key] }),
    // The purge deletes by age across tenants.
    index('ix_idempotency_keys_created_at').on(t.createdAt),
  ],
);

/** Whether a message has its embedding: the background worker moves pending to ready or failed. */
export const embeddingStatuses = ['pending', 'ready', 'failed', 'disabled'] as const;
export type EmbeddingStatus = (typeof embeddingStatuses)[number];

const tsvector = customType<{ data: string }>({ dataType: () => 'tsvector' });

/**
 * Search data of a message, one row each, kept apart from the hot messages row: archiving a
 * message or embedding it then rewrites neither the other's indexes nor the GIN and vector
 * indexes. Rows are inserted by a trigger on messages (so every insert path gets one); the
 * `embedding vector(N)` column and its HNSW index are added at start-up, because their
 * dimension is configuration and pgvector may be absent.
 */
export const messageSearch = pgTable(
  'message_search',
  {
    messageId: uuid('message_id')
      .primaryKey()
      .references(() => messages.id, { onDelete: 'cascade' }),
    tenantId: uuid('tenant_id').notNull(),
    /** to_tsvector(SEARCH_LANGUAGE, content), computed by the trigger. */
    tsv: tsvector('tsv').notNull(),
    embeddingStatus: text('embedding_status', { enum: embeddingStatuses }).notNull(),
    embeddingError: text('embedding_error'),
    /** A worker's claim on a pending row; another worker may take it after this time. */
    leaseUntil: ts('lease_until'),
    /** Claims of this row so far; each claim's number identifies it (a stale worker's is older). */
    attempts: integer('attempts').notNull().default(0),
    /**
     * Failed attempts charged to this message, failures of its own rather than outages; at
     * EMBEDDING_MAX_ATTEMPTS it becomes `failed`. Reset when it is queued again.
     */
    failures: integer('failures').notNull().default(0),
    embeddedAt: ts('embedded_at'),
  },
  (t) => [
    // A short GIN pending list: see drizzle/0004_search_index_pending_list.sql.
    index('ix_message_search_tsv').using('gin', t.tsv).with({ gin_pending_list_limit: 256 }),
    // The worker's queue: pending rows, oldest (UUIDv7) first.
    index('ix_message_search_pending')
      .on(t.messageId)
      .where(sql`${t.embeddingStatus} = 'pending'`),
    index('ix_message_search_failed')
      .on(t.tenantId)
      .where(sql`${t.embeddingStatus} = 'failed'`),
    check(
      'ck_message_search_status',
      sql`${t.embeddingStatus} IN ('pending', 'ready', 'failed', 'disabled')`,
    ),
  ],
);

/** Process-wide settings that must agree across restarts (embedding model and dimension). */
export const appSettings = pgTable('app_settings', {
  key: text('key').primaryKey(),
  value: jsonb('value').notNull(),
  updatedAt: ts('updated_at').notNull().defaultNow(),
});

export type TenantRow = typeof tenants.$inferSelect;
export type MessageRow = typeof messages.$inferSelect;
