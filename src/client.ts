/**
 * Types for applications that call threadstore from TypeScript. `App` gives Eden Treaty
 * (`@elysiajs/eden`) every route with its body, query and answers typed:
 *
 *   import { treaty } from '@elysiajs/eden';
 *   import type { App } from 'threadstore/src/client';
 *   const api = treaty<App>('https://threadstore.example', { headers: { authorization } });
 *
 * Only types are exported, and only through `export type`, so importing this file puts no
 * server code (database driver, Elysia plugins) into an application's bundle.
 *
 * The request and response types below come from the same TypeBox schemas that validate
 * requests and generate /openapi.json.
 */
import type { Static } from 'elysia';
import type { ErrorResponse } from './lib/schemas';
import type {
  Conversation as ConversationSchema,
  ConversationPage as PageSchema,
} from './modules/conversations/model';
import type { MessageModels } from './modules/messages/model';
import type { SearchRequest as SearchRequestSchema, searchModels } from './modules/search/model';

export type { App } from './app';

/** Body of POST /v1/messages, and one item of a batch. */
export type MessageInput = Static<MessageModels['MessageInput']>;
/** Body of POST /v1/messages/batch. */
export type BatchInput = Static<MessageModels['BatchInput']>;
/** A message as the API shows it. */
export type Message = Static<MessageModels['Message']>;
/** A page of GET /v1/messages; pass `next_cursor` back as `cursor` until it is null. */
export type MessagePage = Static<MessageModels['MessagePage']>;
/** Query of GET /v1/messages. */
export type ListMessagesQuery = Static<MessageModels['ListQuery']>;
/** A conversation's summary. */
export type Conversation = Static<typeof ConversationSchema>;
/** A page of GET /v1/conversations. */
export type ConversationPage = Static<typeof PageSchema>;
/** Body of POST /v1/search. */
export type SearchRequest = Static<typeof SearchRequestSchema>;
/** Answer of POST /v1/search. */
export type SearchResponse = Static<ReturnType<typeof searchModels>['SearchResponse']>;
/** The one error body of the API: `{ error: { code, message, request_id, details? } }`. */
export type ErrorBody = Static<typeof ErrorResponse>;
