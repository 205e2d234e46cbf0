import { Type } from '@sinclair/typebox';
import { type Static, t } from 'elysia';
import { Cursor, Order, PageLimit, QueryBoolean, Timestamp } from '../../lib/schemas';
import { ConversationId } from '../messages/model';

export const Conversation = t.Object({
  id: t.String(),
  // TypeBox's own integer: Elysia's also admits numeric strings, which no answer contains.
  message_count: Type.Integer({
    description: 'Messages in the conversation (archived ones only with include_archived)',
  }),
  first_message_at: t.Nullable(Timestamp),
  last_message_at: t.Nullable(Timestamp),
  created_at: Timestamp,
});

/** A conversation as the API shows it. */
export type ConversationView = Static<typeof Conversation>;

export const ConversationParams = t.Object({ id: ConversationId }, { additionalProperties: false });

export const ConversationQuery = t.Object(
  { include_archived: t.Optional(QueryBoolean) },
  { additionalProperties: false },
);

export const ConversationListQuery = t.Object(
  {
    limit: t.Optional(PageLimit(200, 50)),
    cursor: t.Optional(Cursor),
    order: t.Optional(Order),
    include_archived: t.Optional(QueryBoolean),
  },
  { additionalProperties: false },
);

export const ConversationPage = t.Object({
  conversations: t.Array(Conversation),
  next_cursor: t.Nullable(t.String()),
});
