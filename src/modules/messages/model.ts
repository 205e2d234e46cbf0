import { type Static, t } from 'elysia';
import { embeddingFailureCategories } from '../../embeddings/failures';
import {
  DateTimeInput,
  UuidOut,
  Cursor,
  Order,
  PageLimit,
  QueryBoolean,
  Timestamp,
  Uuid,
} from '../../lib/schemas';

/** Limits of stored messages; the schemas and the service both read them from here. */
export const MESSAGE_LIMITS = {
  conversationIdPattern: '^[A-Za-z0-9._:-]{1,128}$',
  nameMaxChars: 256,
  toolCallIdMaxChars: 256,
  toolCallsMaxBytes: 64 * 1024,
  toolCallsMaxItems: 128,
  metadataMaxBytes: 16 * 1024,
  metadataMaxDepth: 5,
  batchMaxItems: 100,
  idempotencyKeyMaxChars: 255,
  pageMax: 200,
  pageDefault: 50,
} as const;

export const ConversationId = t.String({
  pattern: MESSAGE_LIMITS.conversationIdPattern,
  description: '1 to 128 characters of A-Z a-z 0-9 . _ : -',
});

/**
 * Headers of the create routes. Only Idempotency-Key is checked (other headers pass): 1 to 255
 * visible ASCII characters, spaces allowed inside but not at either end.
 */
export const CreateHeaders = t.Object(
  {
    'idempotency-key': t.Optional(
      t.String({
        minLength: 1,
        maxLength: MESSAGE_LIMITS.idempotencyKeyMaxChars,
        pattern: '^[\\x21-\\x7E]([\\x20-\\x7E]*[\\x21-\\x7E])?$',
        description:
          'Makes the write safe to retry. For IDEMPOTENCY_TTL_SECONDS (24 hours by default), a ' +
          'request with the same key and body gets the first response again, with ' +
          '`Idempotent-Replayed: true`, and stores nothing; the same key with another body or ' +
          'on the other create route gets 409 `idempotency_conflict`. Keys are per tenant. ' +
          '1 to 255 visible ASCII characters, spaces allowed inside.',
      }),
    ),
  },
  { additionalProperties: true },
);

// Spelled out (not mapped from messageRoles) so that Elysia infers a union of literals.
export const Role = t.Union(
  [t.Literal('user'), t.Literal('assistant'), t.Literal('system'), t.Literal('tool')],
  { description: 'Chat role of the author' },
);

/** Message schemas; the content limit is configurable, so they are built at start-up. */
export function messageModels(maxContentChars: number) {
  const MessageInput = t.Object(
    {
      conversation_id: ConversationId,
      role: Role,
      content: t.String({
        maxLength: maxContentChars,
        description: `Up to ${maxContentChars} characters; empty only when tool_calls is present`,
      }),
      name: t.Optional(t.String({ minLength: 1, maxLength: MESSAGE_LIMITS.nameMaxChars })),
      tool_call_id: t.Optional(
        t.String({ minLength: 1, maxLength: MESSAGE_LIMITS.toolCallIdMaxChars }),
      ),
      tool_calls: t.Optional(
        t.Array(t.Object({}, { additionalProperties: true }), {
          minItems: 1,
          maxItems: MESSAGE_LIMITS.toolCallsMaxItems,
          description: 'Chat-completion tool calls as sent by the model; at most 64 KiB',
        }),
      ),
      metadata: t.Optional(
        t.Object(
          {},
          {
            additionalProperties: true,
            description: 'Free-form object; at most 16 KiB serialised and 5 levels deep',
          },
        ),
      ),
      created_at: t.Optional(DateTimeInput('For importing history; may not be in the future')),
    },
    { additionalProperties: false },
  );

  const Message = t.Object({
    id: UuidOut,
    conversation_id: t.String(),
    role: Role,
    content: t.String(),
    name: t.Nullable(t.String()),
    tool_call_id: t.Nullable(t.String()),
    tool_calls: t.Nullable(t.Array(t.Unknown())),
    metadata: t.Record(t.String(), t.Unknown()),
    created_at: Timestamp,
    archived: t.Boolean(),
    archived_at: t.Nullable(Timestamp),
    embedding_status: t.Union(
      [t.Literal('pending'), t.Literal('ready'), t.Literal('failed'), t.Literal('disabled')],
      { description: 'pending until the background worker has embedded the message' },
    ),
    embedding_error: t.Nullable(
      t.String({
        description:
          'Why embedding failed or is retrying: `<category>: <message>`, the category one of ' +
          `${embeddingFailureCategories.join(', ')}; the message is written by threadstore`,
      }),
    ),
  });

  return {
    MessageInput,
    Message,
    BatchInput: t.Object(
      {
        messages: t.Array(MessageInput, {
          minItems: 1,
          maxItems: MESSAGE_LIMITS.batchMaxItems,
        }),
      },
      { additionalProperties: false },
    ),
    BatchResult: t.Object({ messages: t.Array(Message) }),
    ListQuery: t.Object(
      {
        conversation_id: t.Optional(ConversationId),
        limit: t.Optional(PageLimit(MESSAGE_LIMITS.pageMax, MESSAGE_LIMITS.pageDefault)),
        cursor: t.Optional(Cursor),
        order: t.Optional(Order),
        include_archived: t.Optional(QueryBoolean),
      },
      { additionalProperties: false },
    ),
    MessagePage: t.Object({ messages: t.Array(Message), next_cursor: t.Nullable(t.String()) }),
  };
}

export type MessageModels = ReturnType<typeof messageModels>;
/** A message as the API shows it. */
export type MessageView = Static<MessageModels['Message']>;
