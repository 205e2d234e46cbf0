// Generators of test/budget-fuzz.test.ts: path spellings for every route, and JSON-RPC bodies
// (single messages and batches) for the MCP endpoint, each labelled with what it must cost.
import fc from 'fast-check';

/** What one message (or request) must spend: a budget, or nothing. */
export type Cost = 'write' | 'read' | 'admin' | 'free';

/** One way of writing a path, named for failure reports. */
export interface Spelling {
  kind: string;
  path: string;
}

/** The index of the n-th occurrence-ish of `ch` in `s` (n modulo the count), or -1. */
function nth(s: string, ch: string, n: number, from = 0): number {
  const at: number[] = [];
  for (let i = from; i < s.length; i++) if (s[i] === ch) at.push(i);
  return at.length === 0 ? -1 : at[n % at.length]!;
}

/**
 * A path written the ways a client (or an attacker) may write it: trailing and repeated
 * slashes, percent-encoded letters and slashes, dot segments, backslashes, letter case, path
 * parameters, fragments. Some reach the route (the router and the URL parser fold them), some
 * get 404; either way the request must be counted, once, and as the route it reached.
 */
export function spelling(original: string): fc.Arbitrary<Spelling> {
  const q = original.indexOf('?');
  const path = q < 0 ? original : original.slice(0, q);
  const query = q < 0 ? '' : original.slice(q);
  const at = (kind: string, make: (n: number) => string) =>
    fc.nat().map((n) => ({ kind, path: make(n) + query }));
  const replaceAt = (i: number, by: string, len = 1) =>
    i < 0 ? path : path.slice(0, i) + by + path.slice(i + len);
  const letters = [...path].flatMap((c, i) => (/[a-z]/i.test(c) ? [i] : []));
  return fc.oneof(
    { weight: 4, arbitrary: fc.constant({ kind: 'as declared', path: original }) },
    { weight: 4, arbitrary: fc.constant({ kind: 'trailing slash', path: `${path}/${query}` }) },
    fc.constant({ kind: 'two trailing slashes', path: `${path}//${query}` }),
    fc.constant({ kind: 'leading double slash', path: `/${path}${query}` }),
    at('inner double slash', (n) => replaceAt(nth(path, '/', n, 1), '//')),
    at('encoded slash', (n) => replaceAt(nth(path, '/', n, 1), '%2F')),
    at('encoded letter', (n) => {
      const i = letters.length ? letters[n % letters.length]! : -1;
      const hex = path.charCodeAt(i).toString(16);
      return replaceAt(i, `%${n % 2 ? hex.toUpperCase() : hex}`);
    }),
    at('dot segment', (n) => replaceAt(nth(path, '/', n), n % 2 ? '/./' : '/x/../')),
    at('backslash', (n) => replaceAt(nth(path, '/', n), '\\')),
    fc.constant({ kind: 'upper case', path: path.toUpperCase() + query }),
    fc.constant({ kind: 'path parameter', path: `${path};x=1${query}` }),
    fc.constant({ kind: 'fragment', path: `${path}#frag${query}` }),
    fc.constant({ kind: 'empty query', path: `${path}?${query.slice(1)}` }),
  );
}

/** The tools and the budgets of their HTTP routes (README: MCP). */
export const TOOL_COSTS: Record<string, Cost> = {
  add_messages: 'write',
  delete_message: 'write',
  search_messages: 'read',
  list_messages: 'read',
  list_conversations: 'read',
  get_message: 'read',
};

/** Arguments each tool accepts (one message stored per add_messages, so stores can be counted). */
const TOOL_ARGS: Record<string, fc.Arbitrary<unknown>> = {
  add_messages: fc.constant({
    conversation_id: 'budget',
    messages: [{ role: 'user', content: 'counted' }],
  }),
  delete_message: fc.uuid().map((id) => ({ id })),
  search_messages: fc.constant({ query: 'counted', mode: 'fulltext' }),
  list_messages: fc.constant({ limit: 1 }),
  list_conversations: fc.constant({}),
  get_message: fc.uuid().map((id) => ({ id })),
};

/** One JSON-RPC message and what it must cost when its request is handled. */
export interface RpcMessage {
  message: unknown;
  cost: Cost;
  /** The tool it calls, when the SDK hands it to the tools/call handler. */
  tool?: string;
}

/** A well-formed call of one of `tools`. */
const toolCall = (tools: string[]): fc.Arbitrary<RpcMessage> =>
  fc.tuple(fc.constantFrom(...tools), fc.nat({ max: 1000 })).chain(([tool, id]) =>
    TOOL_ARGS[tool]!.map((args) => ({
      message: {
        jsonrpc: '2.0',
        id,
        method: 'tools/call',
        params: { name: tool, arguments: args },
      },
      cost: TOOL_COSTS[tool]!,
      tool,
    })),
  );

/** Messages of every kind: tool calls (known and unknown tools), other requests, notifications. */
export const rpcMessage: fc.Arbitrary<RpcMessage> = fc.oneof(
  { weight: 6, arbitrary: toolCall(Object.keys(TOOL_ARGS)) },
  fc.nat({ max: 1000 }).map((id) => ({
    message: { jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'no_such_tool' } },
    cost: 'read' as const,
    tool: 'no_such_tool',
  })),
  fc
    .tuple(
      fc.nat({ max: 1000 }),
      fc.constantFrom(
        { method: 'tools/list' },
        { method: 'ping' },
        { method: 'no/such/method' },
        // Not what the SDK hands to the tools/call handler: refused before any tool runs.
        { method: 'tools/call', params: { arguments: {} } },
        { method: 'tools/call', params: { name: 7 } },
      ),
    )
    .map(([id, m]) => ({ message: { jsonrpc: '2.0', id, ...m }, cost: 'read' as const })),
  fc.constantFrom(
    { message: { jsonrpc: '2.0', method: 'notifications/initialized' }, cost: 'read' as const },
    { message: { jsonrpc: '2.0', id: 5, result: {} }, cost: 'read' as const },
  ),
);

/** The message with the id `i + 1` (a batch's ids must differ to be told apart), if it has one. */
function numbered(m: RpcMessage, i: number): RpcMessage {
  const message = m.message as Record<string, unknown>;
  return 'id' in message ? { ...m, message: { ...message, id: i + 1 } } : m;
}

/** A body for POST /mcp: one message, a batch (empty up to 60), or bytes that are not JSON. */
export type RpcBody =
  | { kind: 'single'; messages: [RpcMessage] }
  | { kind: 'batch'; messages: RpcMessage[] }
  | { kind: 'junk'; raw: string };

export const rpcBody: fc.Arbitrary<RpcBody> = fc.oneof(
  {
    weight: 3,
    arbitrary: rpcMessage.map((m) => ({ kind: 'single' as const, messages: [m] as [RpcMessage] })),
  },
  {
    weight: 4,
    arbitrary: fc
      .array(rpcMessage, { maxLength: 60 })
      .map((messages) => ({ kind: 'batch' as const, messages: messages.map(numbered) })),
  },
  fc.constantFrom('{"jsonrpc":', '[{]', 'not json').map((raw) => ({ kind: 'junk' as const, raw })),
);

/** Batches mostly of add_messages (one message stored each): what a budget bypass shows in. */
export const writeHeavyBody: fc.Arbitrary<RpcBody> = fc
  .array(
    fc.oneof(
      { weight: 5, arbitrary: toolCall(['add_messages']) },
      { weight: 1, arbitrary: rpcMessage },
    ),
    { minLength: 1, maxLength: 40 },
  )
  .map((messages) => ({ kind: 'batch' as const, messages: messages.map(numbered) }));

/** The JSON text of a body. */
export function rpcText(body: RpcBody): string {
  if (body.kind === 'junk') return body.raw;
  const messages = body.messages.map((m) => m.message);
  return JSON.stringify(body.kind === 'single' ? messages[0] : messages);
}
