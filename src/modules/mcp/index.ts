import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import {
  CallToolRequestSchema,
  type CallToolResult,
  isJSONRPCRequest,
  ListToolsRequestSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { Elysia, t } from 'elysia';
import type { AppDeps } from '../../deps';
import { errors } from '../../lib/errors';
import { commonErrors } from '../../lib/schemas';
import { tenantAuth } from '../../plugins/auth';
import { describeError } from '../../plugins/errors';
import { type Budget, type RequestState, requestState } from '../../lib/request-state';
import { VERSION } from '../../version';
import { CreateHeaders } from '../messages/model';
import { MCP_PATH } from './path';
import {
  buildTools,
  type CompiledTool,
  checkArguments,
  jsonSchemaOf,
  type ToolContext,
} from './tools';

const INSTRUCTIONS =
  'threadstore keeps conversations and their messages for the caller (one tenant, identified ' +
  'by the API key). Store what should be remembered with add_messages, find it again with ' +
  'search_messages (by words or meaning), page through a conversation with list_messages. ' +
  'Errors come back as tool errors whose text is JSON with error.code (e.g. validation_failed, ' +
  'not_found, rate_limited with details.retry_after_seconds).';

/**
 * The Model Context Protocol endpoint: MCP's Streamable HTTP transport (the official SDK's
 * low-level Server, stateless, JSON answers), so any instance of a fleet answers any call.
 * Authenticated by the tenant's bearer key like /v1; request ids, logs, metrics and the
 * Idempotency-Key header apply as to any route. Every message counts as a call of its own, in
 * a JSON-RPC batch too: a tool call spends the rate-limit budget of the HTTP route it matches
 * (see plugins/rate-limit.ts), any other message one read. Without a way to count (no
 * `RequestState.charge`), nothing runs: the endpoint fails closed.
 */
export function mcpModule(deps: AppDeps) {
  const { keys, logger } = deps;
  const tools = buildTools(deps);
  const byName = new Map(tools.map((tool) => [tool.name, tool]));
  const listed = tools.map((tool) => ({
    name: tool.name,
    title: tool.title,
    description: tool.description,
    inputSchema: jsonSchemaOf(tool.input),
    outputSchema: jsonSchemaOf(tool.output),
    annotations: tool.annotations,
  }));

  /** A tool's outcome as MCP wants it; every failure is a tool error carrying the API's code. */
  async function call(
    tool: CompiledTool | undefined,
    name: string,
    args: unknown,
    request: Request,
    ctx: ToolContext,
  ): Promise<CallToolResult> {
    const state = requestState(request);
    state.tool = name;
    try {
      // A batch whose request has timed out starts none of its remaining tools.
      if (state.signal?.aborted) throw errors.requestTimedOut();
      // A call of an unknown tool is a call all the same: one read.
      await chargerOf(state)(tool?.budget ?? 'read');
      if (!tool) {
        throw errors.notFound(`No tool named ${name}`, { tools: tools.map((x) => x.name) });
      }
      checkArguments(tool, args ?? {});
      const result = (await tool.run(args ?? {}, ctx)) as Record<string, unknown>;
      return {
        content: [{ type: 'text', text: JSON.stringify(result) }],
        structuredContent: result,
      };
    } catch (err) {
      const { body } = describeError(undefined, err, state, logger);
      return { isError: true, content: [{ type: 'text', text: JSON.stringify(body) }] };
    }
  }

  function serverFor(request: Request, ctx: ToolContext): Server {
    const server = new Server(
      { name: 'threadstore', version: VERSION },
      { capabilities: { tools: {} }, instructions: INSTRUCTIONS },
    );
    server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: listed }));
    server.setRequestHandler(CallToolRequestSchema, ({ params }) =>
      call(byName.get(params.name), params.name, params.arguments, request, ctx),
    );
    return server;
  }

  const notAllowed = () => {
    throw errors.methodNotAllowed('The MCP endpoint is stateless: POST only', 'POST');
  };

  return new Elysia({ name: 'mcp', detail: { tags: ['mcp'] } })
    .use(tenantAuth(keys))
    .post(
      MCP_PATH,
      async ({ request, body, tenant, headers }) => {
        const state = requestState(request);
        // Before anything runs: each message that is not a tool call is one read (an empty
        // batch too); each tool call is counted as it runs, against its tool's budget (call).
        const charge = chargerOf(state);
        const messages = Array.isArray(body) ? body : [body];
        const others = messages.filter((m) => !isToolCall(m)).length;
        for (let i = 0; i < Math.max(others, messages.length === 0 ? 1 : 0); i++) {
          await charge('read');
        }
        const server = serverFor(request, {
          tenantId: tenant.id,
          idempotencyKey: headers['idempotency-key'],
        });
        const transport = new WebStandardStreamableHTTPServerTransport({
          sessionIdGenerator: undefined,
          enableJsonResponse: true,
        });
        await server.connect(transport);
        try {
          return await transport.handleRequest(request, { parsedBody: body });
        } finally {
          await server.close();
        }
      },
      {
        headers: CreateHeaders,
        // Names the media type for OpenAPI; plugins/json-body.ts parses it.
        parse: 'application/json',
        body: t.Unknown({ description: 'A JSON-RPC message of the Model Context Protocol' }),
        response: {
          200: t.Unknown({ description: 'The JSON-RPC response' }),
          202: t.Void({ description: 'A notification or response, accepted' }),
          ...commonErrors,
        },
        detail: {
          summary: 'Model Context Protocol (Streamable HTTP, stateless)',
          description:
            'Tools: add_messages, search_messages, list_messages, list_conversations, ' +
            'get_message, delete_message. Each message (of a batch too) counts as one call: a ' +
            'tool call against the rate-limit budget of its HTTP route (writes or reads), any ' +
            'other message as one read.',
          security: [{ tenantKey: [] }],
        },
      },
    )
    .get(MCP_PATH, notAllowed, { detail: { hide: true } })
    .delete(MCP_PATH, notAllowed, { detail: { hide: true } });
}

/**
 * Whether the SDK hands this message to the tools/call handler, which counts it: the SDK's own
 * schemas decide, so a message it would not dispatch there is counted up front instead.
 */
function isToolCall(message: unknown): boolean {
  return isJSONRPCRequest(message) && CallToolRequestSchema.safeParse(message).success;
}

/** How this request's calls are counted; with no way to count (a wiring bug), nothing runs. */
function chargerOf(state: RequestState): (budget: Budget) => Promise<void> {
  if (!state.charge) {
    throw errors.internal('This call cannot be counted against a budget');
  }
  return state.charge;
}
