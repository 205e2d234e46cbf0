import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import type { AppDeps } from '../../deps';
import { errors } from '../../lib/errors';
import { checkJsonStrings } from '../../plugins/json-body';
import { Cursor, Order, Uuid } from '../../lib/schemas';
import type { Budget } from '../../lib/request-state';
import { ConversationPage } from '../conversations/model';
import { listConversations } from '../conversations/service';
import { storeMessages } from '../messages/idempotency';
import { ConversationId, MESSAGE_LIMITS, messageModels } from '../messages/model';
import { deleteMessage, getMessage, listMessages } from '../messages/service';
import { SEARCH_LIMITS, SearchRequest, searchInputOf, searchModels } from '../search/model';
import { searchMessages } from '../search/service';

/** What a tool call knows about the HTTP request that carried it. */
export interface ToolContext {
  tenantId: string;
  /** Idempotency-Key of the POST /mcp request, for the write tools. */
  idempotencyKey?: string;
}

/** One MCP tool: its JSON Schema (TypeBox), its rate-limit budget and what it runs. */
export interface Tool<I extends TSchema = TSchema> {
  name: string;
  title: string;
  description: string;
  /** The HTTP route's budget this tool spends: one call counts as one request there. */
  budget: Budget;
  input: I;
  output: TSchema;
  annotations: { readOnlyHint: boolean; destructiveHint: boolean; idempotentHint: boolean };
  run(args: Static<I>, ctx: ToolContext): Promise<unknown>;
}

/** A tool with its compiled argument check. */
export interface CompiledTool extends Tool {
  check: TypeCheck<TSchema>;
}

const tool = <I extends TSchema>(spec: Tool<I>): CompiledTool =>
  ({ ...spec, check: TypeCompiler.Compile(spec.input) }) as unknown as CompiledTool;

/**
 * Integers and booleans of the HTTP query strings arrive as text; tool arguments are JSON, so
 * these take their bounds from the same limits with JSON types.
 */
const pageLimit = (max: number, dflt: number) =>
  Type.Integer({ minimum: 1, maximum: max, default: dflt, description: `1 to ${max}` });
const includeArchived = Type.Boolean({
  default: false,
  description: 'Also return archived messages (hidden by default)',
});

/**
 * The tools, built from the same schemas and services as the HTTP routes: each runs exactly
 * what its route runs, with the same limits and checks.
 */
export function buildTools({ db, cursors, config, search, embedder }: AppDeps): CompiledTool[] {
  const m = messageModels(config.MAX_CONTENT_CHARS);
  const s = searchModels(m);
  const embeddingStatus = search.semantic ? 'pending' : 'disabled';
  const NewMessage = Type.Omit(m.MessageInput, ['conversation_id'], {
    additionalProperties: false,
  });

  return [
    tool({
      name: 'add_messages',
      title: 'Add messages to a conversation',
      description:
        'Stores 1 to 100 messages in one conversation, all or nothing, in the order given, and ' +
        'returns them with their ids and times. The conversation is created on first use; ' +
        'pick a stable conversation_id (e.g. the chat session id) to recall it later. Each ' +
        'message has a role (user, assistant, system or tool) and content (text; empty only ' +
        'when tool_calls is given); name, tool_call_id, tool_calls and a free-form metadata ' +
        'object are optional. New messages become searchable by meaning once embedded ' +
        '(embedding_status "ready"); full-text search finds them at once.',
      budget: 'write',
      input: Type.Object(
        {
          conversation_id: ConversationId,
          messages: Type.Array(NewMessage, {
            minItems: 1,
            maxItems: MESSAGE_LIMITS.batchMaxItems,
          }),
        },
        { additionalProperties: false },
      ),
      output: m.BatchResult,
      annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false },
      run: async (args, ctx) => {
        const inputs = args.messages.map((message) => ({
          ...message,
          conversation_id: args.conversation_id,
        }));
        const result = await storeMessages(
          db,
          ctx.tenantId,
          inputs as Parameters<typeof storeMessages>[2],
          (messages) => ({ messages }),
          {
            key: ctx.idempotencyKey,
            route: 'POST /mcp add_messages',
            body: args,
            ttlSeconds: config.IDEMPOTENCY_TTL_SECONDS,
            embeddingStatus,
          },
        );
        return result.body;
      },
    }),
    tool({
      name: 'search_messages',
      title: 'Search stored messages',
      description:
        'Finds stored messages by words, by meaning, or both, best first. mode "fulltext" ' +
        'matches words (quoted phrases, `or`, `-word`); "semantic" matches meaning; "hybrid" ' +
        '(default) fuses both and falls back to full-text when embeddings are unavailable ' +
        '(the answer then says mode "fulltext" or degraded true). Narrow it with ' +
        'conversation_id, created_after / created_before (RFC 3339 times) or a metadata ' +
        `object the messages must contain. limit: 1 to ${SEARCH_LIMITS.limitMax} ` +
        `(default ${SEARCH_LIMITS.limitDefault}).`,
      budget: 'read',
      input: SearchRequest,
      output: s.SearchResponse,
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true },
      run: (args, ctx) =>
        searchMessages({ db, search, embedder }, ctx.tenantId, searchInputOf(args)),
    }),
    tool({
      name: 'list_messages',
      title: 'List the messages of a conversation',
      description:
        'Returns messages in time order (order "asc", oldest first, by default; "desc" for the ' +
        'latest first), a page at a time. Pass next_cursor from the answer as cursor to get ' +
        'the next page; next_cursor is null on the last page. Without conversation_id, lists ' +
        'all conversations of the caller together.',
      budget: 'read',
      input: Type.Object(
        {
          conversation_id: Type.Optional(ConversationId),
          limit: Type.Optional(pageLimit(MESSAGE_LIMITS.pageMax, MESSAGE_LIMITS.pageDefault)),
          cursor: Type.Optional(Cursor),
          order: Type.Optional(Order),
          include_archived: Type.Optional(includeArchived),
        },
        { additionalProperties: false },
      ),
      output: m.MessagePage,
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true },
      run: (args, ctx) =>
        listMessages(db, cursors, ctx.tenantId, {
          conversationId: args.conversation_id,
          includeArchived: args.include_archived ?? false,
          page: {
            limit: args.limit ?? MESSAGE_LIMITS.pageDefault,
            cursor: args.cursor,
            order: args.order ?? 'asc',
          },
        }),
    }),
    tool({
      name: 'list_conversations',
      title: 'List conversations',
      description:
        'Returns the caller’s conversations in the order they were started, each with its ' +
        'message count and first and last message times, a page at a time (pass next_cursor ' +
        'as cursor for the next page).',
      budget: 'read',
      input: Type.Object(
        {
          limit: Type.Optional(pageLimit(200, 50)),
          cursor: Type.Optional(Cursor),
          order: Type.Optional(Order),
          include_archived: Type.Optional(includeArchived),
        },
        { additionalProperties: false },
      ),
      output: ConversationPage,
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true },
      run: (args, ctx) =>
        listConversations(db, cursors, ctx.tenantId, {
          includeArchived: args.include_archived ?? false,
          page: { limit: args.limit ?? 50, cursor: args.cursor, order: args.order ?? 'asc' },
        }),
    }),
    tool({
      name: 'get_message',
      title: 'Get one message',
      description: 'Returns one stored message by its id (a UUID from an earlier answer).',
      budget: 'read',
      input: Type.Object({ id: Uuid }, { additionalProperties: false }),
      output: m.Message,
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true },
      run: (args, ctx) => getMessage(db, ctx.tenantId, args.id),
    }),
    tool({
      name: 'delete_message',
      title: 'Delete one message',
      description:
        'Deletes one stored message by its id, for good (it cannot be recalled afterwards). ' +
        'Answers not_found when there is no such message.',
      budget: 'write',
      input: Type.Object({ id: Uuid }, { additionalProperties: false }),
      output: Type.Object({ deleted: Type.Literal(true), id: Type.String() }),
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true },
      run: async (args, ctx) => {
        await deleteMessage(db, ctx.tenantId, args.id);
        return { deleted: true, id: args.id };
      },
    }),
  ];
}

/**
 * A TypeBox schema as plain JSON Schema: TypeBox's symbol keys dropped, and OpenAPI's
 * `nullable` (which Elysia's t.Nullable adds beside its `anyOf` with null) removed, as JSON
 * Schema validators such as MCP clients' Ajv refuse it.
 */
export function jsonSchemaOf(schema: TSchema): Record<string, unknown> {
  return JSON.parse(JSON.stringify(schema), (key, value) =>
    key === 'nullable' ? undefined : value,
  );
}

/** Checks a tool's arguments as the HTTP routes check bodies: 422 validation_failed, with paths. */
export function checkArguments(t: CompiledTool, args: unknown): void {
  checkJsonStrings(args);
  if (t.check.Check(args)) return;
  const details = [...t.check.Errors(args)].slice(0, 20).map((e) => ({
    in: 'arguments',
    path: e.path,
    message: e.message,
  }));
  throw errors.validationFailed(`Invalid arguments of ${t.name}`, details);
}
