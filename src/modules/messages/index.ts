import { type Context, Elysia, t } from 'elysia';
import type { AppDeps } from '../../deps';
import { IdParams, commonErrors } from '../../lib/schemas';
import { tenantAuth } from '../../plugins/auth';
import {
  type IdempotencyOptions,
  REPLAYED_HEADER,
  storeMessages,
  type WriteResult,
} from './idempotency';
import { CreateHeaders, messageModels } from './model';
import { deleteMessage, getMessage, listMessages } from './service';

/** Sets the status (and the replay marker) of a create route's answer and returns its body. */
function reply<T>(set: Context['set'], result: WriteResult<T>): T {
  set.status = result.status;
  if (result.replayed) set.headers[REPLAYED_HEADER] = 'true';
  return result.body;
}

/** Messages of the calling tenant: create (one or a batch), list, get, delete. */
export function messagesModule({ db, cursors, keys, config, search }: AppDeps) {
  // The index trigger queues new messages for embedding only when semantic search is on.
  const embeddingStatus = search.semantic ? 'pending' : 'disabled';
  const m = messageModels(config.MAX_CONTENT_CHARS);
  /**
   * What both create routes pass on about the request, for idempotency and indexing. The
   * handlers destructure what they use: Elysia reads a handler's parameters to decide what to
   * prepare per request, and a context passed on whole had it parse cookies and the query too.
   */
  const writeOptions = (
    key: string | undefined,
    route: string,
    body: unknown,
  ): IdempotencyOptions => ({
    key,
    route: `POST ${route}`,
    body,
    ttlSeconds: config.IDEMPOTENCY_TTL_SECONDS,
    embeddingStatus,
  });
  return new Elysia({ name: 'messages', prefix: '/messages', detail: { tags: ['messages'] } })
    .use(tenantAuth(keys))
    .post(
      '',
      async ({ tenant, body, set, headers, route }) => {
        const options = writeOptions(headers['idempotency-key'], route, body);
        const result = await storeMessages(db, tenant.id, [body], ([m]) => m!, options);
        return reply(set, result);
      },
      {
        headers: CreateHeaders,
        // Names the media type for OpenAPI; plugins/json-body.ts parses it.
        parse: 'application/json',
        body: m.MessageInput,
        response: { 201: m.Message, 409: commonErrors[422], ...commonErrors },
        detail: { summary: 'Store a message', security: [{ tenantKey: [] }] },
      },
    )
    .post(
      '/batch',
      async ({ tenant, body, set, headers, route }) => {
        const options = writeOptions(headers['idempotency-key'], route, body);
        const result = await storeMessages(
          db,
          tenant.id,
          body.messages,
          (messages) => ({ messages }),
          options,
        );
        return reply(set, result);
      },
      {
        headers: CreateHeaders,
        // Names the media type for OpenAPI; plugins/json-body.ts parses it.
        parse: 'application/json',
        body: m.BatchInput,
        response: { 201: m.BatchResult, 409: commonErrors[422], ...commonErrors },
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
