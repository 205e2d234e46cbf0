import { Elysia, t } from 'elysia';
import type { AppDeps } from '../../deps';
import { commonErrors } from '../../lib/schemas';
import { tenantAuth } from '../../plugins/auth';
import {
  Conversation,
  ConversationListQuery,
  ConversationPage,
  ConversationParams,
  ConversationQuery,
} from './model';
import {
  deleteConversation,
  getConversation,
  listConversations,
  setConversationArchived,
} from './service';

const security = [{ tenantKey: [] }];

/** Conversations of the calling tenant, with message counts and first/last times. */
export function conversationsModule({ db, cursors, keys }: AppDeps) {
  return new Elysia({
    name: 'conversations',
    prefix: '/conversations',
    detail: { tags: ['conversations'] },
  })
    .use(tenantAuth(keys))
    .get(
      '',
      ({ tenant, query }) =>
        listConversations(db, cursors, tenant.id, {
          includeArchived: query.include_archived === 'true',
          page: { limit: query.limit ?? 50, cursor: query.cursor, order: query.order ?? 'asc' },
        }),
      {
        query: ConversationListQuery,
        response: { 200: ConversationPage, ...commonErrors },
        detail: { summary: 'List conversations in the order they were started', security },
      },
    )
    .get(
      '/:id',
      ({ tenant, params, query }) =>
        getConversation(db, tenant.id, params.id, query.include_archived === 'true'),
      {
        params: ConversationParams,
        query: ConversationQuery,
        response: { 200: Conversation, 404: commonErrors[422], ...commonErrors },
        detail: { summary: 'Get a conversation summary', security },
      },
    )
    .delete(
      '/:id',
      async ({ tenant, params, set }) => {
        await deleteConversation(db, tenant.id, params.id);
        set.status = 204;
      },
      {
        params: ConversationParams,
        response: { 204: t.Void(), 404: commonErrors[422], ...commonErrors },
        detail: {
          summary: 'Delete a conversation and all its messages',
          description:
            'Messages are deleted in batches of 1,000, each a short statement of its own. A ' +
            'deletion still running at REQUEST_TIMEOUT_MS stops there and answers 503 ' +
            'request_timeout: the conversation stays with the messages not deleted yet, and ' +
            'repeating the DELETE finishes it. 204 means the conversation and every message ' +
            'are gone.',
          security,
        },
      },
    )
    .post(
      '/:id/archive',
      async ({ tenant, params }) => ({
        archived: await setConversationArchived(db, tenant.id, params.id, true),
      }),
      {
        params: ConversationParams,
        response: {
          200: t.Object({ archived: t.Integer() }),
          404: commonErrors[422],
          ...commonErrors,
        },
        detail: {
          summary: 'Archive every message of a conversation (hidden unless include_archived)',
          description:
            'In batches of 5,000 messages. One still running at REQUEST_TIMEOUT_MS stops there ' +
            'and answers 503 request_timeout with part of the messages archived; repeating the ' +
            'call archives the rest.',
          security,
        },
      },
    )
    .post(
      '/:id/unarchive',
      async ({ tenant, params }) => ({
        unarchived: await setConversationArchived(db, tenant.id, params.id, false),
      }),
      {
        params: ConversationParams,
        response: {
          200: t.Object({ unarchived: t.Integer() }),
          404: commonErrors[422],
          ...commonErrors,
        },
        detail: { summary: 'Restore every archived message of a conversation', security },
      },
    );
}
