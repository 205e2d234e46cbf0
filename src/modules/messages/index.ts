import { Elysia, t } from 'elysia';
import type { AppDeps } from '../../deps';
import { IdParams, commonErrors } from '../../lib/schemas';
import { tenantAuth } from '../../plugins/auth';
import { messageModels } from './model';
import { createMessages, deleteMessage, getMessage, listMessages } from './service';

/** Messages of the calling tenant: create (one or a batch), list, get, delete. */
export function messagesModule({ db, cursors, keys, config }: AppDeps) {
  const m = messageModels(config.MAX_CONTENT_CHARS);
  return new Elysia({ name: 'messages', prefix: '/messages', detail: { tags: ['messages'] } })
    .use(tenantAuth(keys))
    .post(
      '',
      async ({ tenant, body, set }) => {
        const [message] = await createMessages(db, tenant.id, [body]);
        set.status = 201;
        return message!;
      },
      {
        body: m.MessageInput,
        response: { 201: m.Message, ...commonErrors },
        detail: { summary: 'Store a message', security: [{ tenantKey: [] }] },
      },
    )
    .post(
      '/batch',
      async ({ tenant, body, set }) => {
        const messages = await createMessages(db, tenant.id, body.messages);
        set.status = 201;
        return { messages };
      },
      {
        body: m.BatchInput,
        response: { 201: m.BatchResult, ...commonErrors },
        detail: {
          summary: 'Store 1 to 100 messages, all or nothing',
          security: [{ tenantKey: [] }],
        },
      },
    )
    .get(
      '',
      ({ tenant, query }) =>
        listMessages(db, cursors, tenant.id, {
          conversationId: query.conversation_id,
          includeArchived: query.include_archived === 'true',
          page: { limit: query.limit ?? 50, cursor: query.cursor, order: query.order ?? 'asc' },
        }),
      {
        query: m.ListQuery,
        response: { 200: m.MessagePage, ...commonErrors },
        detail: {
          summary: 'List messages in time order (keyset pagination)',
          security: [{ tenantKey: [] }],
        },
      },
    )
    .get('/:id', ({ tenant, params }) => getMessage(db, tenant.id, params.id), {
      params: IdParams,
      response: { 200: m.Message, 404: commonErrors[422], ...commonErrors },
      detail: { summary: 'Get a message', security: [{ tenantKey: [] }] },
    })
    .delete(
      '/:id',
      async ({ tenant, params, set }) => {
        await deleteMessage(db, tenant.id, params.id);
        set.status = 204;
      },
      {
        params: IdParams,
        response: { 204: t.Void(), 404: commonErrors[422], ...commonErrors },
        detail: { summary: 'Delete a message', security: [{ tenantKey: [] }] },
      },
    );
}
