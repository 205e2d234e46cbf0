// Generated MCP traffic: tool calls with arguments of every kind (hostile strings, wrong types,
// unknown fields, nesting), unknown tools and malformed JSON-RPC, from one tenant; times at the
// ends of the range, id spellings and content at the size limit. Whatever is sent, the answer
// is never a 5xx, a tool failure is a tool error carrying a documented API error code, the
// other tenant's data does not change, and the marker planted in every content, query and
// metadata value appears in no log line. FUZZ_SEED replays a run.
import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { anyJson, hostileString } from './support/fuzz';
import {
  extremeTime,
  fuzzMarker,
  limitContent,
  linesWithMarker,
  mcpEdgeCall,
  planted,
  plantedJson,
  uuidSpelling,
} from './support/fuzz-values';
import { sharedApp } from './support/app';

const t = await sharedApp();
const RUNS = 400;
const EDGE_RUNS = 300;
const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const MARKER = fuzzMarker(seed);

const TOOLS = [
  'add_messages',
  'search_messages',
  'list_messages',
  'list_conversations',
  'get_message',
  'delete_message',
];
/** Codes a tool error may carry for bad input (embeddings are off in this app). */
const TOOL_ERROR_CODES = new Set([
  'validation_failed',
  'not_found',
  'invalid_cursor',
  'idempotency_conflict',
  'semantic_search_disabled',
]);

const a = await t.tenant('fuzz a');
const b = await t.tenant('fuzz b');
const seeded = await t.call('POST', '/v1/messages/batch', {
  key: b.api_key,
  body: {
    messages: Array.from({ length: 5 }, (_, i) => ({
      conversation_id: 'b-private',
      role: 'user',
      content: `b secret ${i}`,
    })),
  },
});
const bIds: string[] = seeded.json.messages.map((m: { id: string }) => m.id);
const own = await t.call('POST', '/v1/messages', {
  key: a.api_key,
  body: { conversation_id: 'a-own', role: 'user', content: 'a message' },
});
const aIds: string[] = [own.json.id];

/** Argument values: valid-looking ones mixed with anything JSON can hold. */
const value = fc.oneof(
  anyJson,
  planted(hostileString, MARKER),
  fc.constantFrom(...bIds),
  fc.uuid(),
  uuidSpelling([...aIds, ...bIds], false),
  extremeTime,
  fc.integer({ min: -5, max: 500 }),
  fc.constantFrom('user', 'assistant', 'robot', 'asc', 'desc', 'hybrid', 'fulltext', 'semantic'),
);
const message = fc.oneof(
  fc.dictionary(
    fc.constantFrom(
      'role',
      'content',
      'name',
      'tool_call_id',
      'tool_calls',
      'metadata',
      'created_at',
      'extra',
    ),
    value,
  ),
  fc.record({
    role: fc.constant('user'),
    content: fc.oneof(
      planted(hostileString, MARKER),
      limitContent(t.config.MAX_CONTENT_CHARS, MARKER),
    ),
    metadata: plantedJson(anyJson, MARKER),
    created_at: fc.option(extremeTime, { nil: undefined }),
  }),
);
const args = fc.oneof(
  fc.dictionary(
    fc.constantFrom(
      'conversation_id',
      'messages',
      'query',
      'mode',
      'limit',
      'cursor',
      'order',
      'include_archived',
      'id',
      'metadata',
      'created_after',
      'extra',
    ),
    fc.oneof(value, fc.array(message, { maxLength: 3 })),
  ),
  anyJson,
);
const call = fc.record({
  name: fc.oneof(fc.constantFrom(...TOOLS), hostileString),
  arguments: args,
});
/** A JSON-RPC body: mostly tools/call, sometimes something malformed. */
const body = fc.oneof(
  {
    weight: 8,
    arbitrary: call.map((params) => ({ jsonrpc: '2.0', id: 1, method: 'tools/call', params })),
  },
  { weight: 1, arbitrary: anyJson },
  {
    weight: 1,
    arbitrary: fc.record({
      jsonrpc: fc.constant('2.0'),
      id: fc.nat(),
      method: hostileString,
      params: anyJson,
    }),
  },
);

/** Every message object (an id with a role and a conversation) anywhere in a result. */
function* messagesIn(value: unknown): Generator<{ id: string }> {
  if (Array.isArray(value)) {
    for (const v of value) yield* messagesIn(v);
  } else if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (typeof o.id === 'string' && 'role' in o && 'conversation_id' in o)
      yield o as { id: string };
    for (const v of Object.values(o)) yield* messagesIn(v);
  }
}

/** Log lines already checked for the marker. */
let logsChecked = t.logs.raw.length;

/** Fails on any log line since the last call that holds the marker. */
function expectNoMarkerLogged(what: unknown) {
  const leaked = linesWithMarker(t.logs.raw.slice(logsChecked), MARKER);
  logsChecked = t.logs.raw.length;
  expect(leaked, `logged a planted value: ${JSON.stringify(what).slice(0, 500)}`).toEqual([]);
}

/** The tool result of one call, with the checks every answer gets. */
async function send(payload: unknown, statuses: Record<string, number>) {
  const res = await t.call('POST', '/mcp', {
    key: a.api_key,
    body: payload,
    headers: { accept: 'application/json, text/event-stream' },
  });
  statuses[res.status] = (statuses[res.status] ?? 0) + 1;
  expectNoMarkerLogged(payload);
  expect(res.status).toBeLessThan(500);
  return res;
}

/** A tool error carries a documented API code and a request id. */
function expectToolError(result: { content: { text: string }[] }) {
  const error = JSON.parse(result.content[0]!.text).error;
  expect(TOOL_ERROR_CODES.has(error.code) ? error.code : { unexpected: error }).toBe(error.code);
  expect(error.request_id).toBeString();
}

/** No message of the other tenant ever comes back, and none is deleted. */
function expectNoneOfB(result: { structuredContent?: any }) {
  const found = [...messagesIn(result.structuredContent)].map((m) => m.id);
  const deleted = result.structuredContent?.deleted ? [result.structuredContent.id] : [];
  for (const id of [...found, ...deleted]) expect(bIds).not.toContain(id.toLowerCase());
}

async function bState() {
  const res = await t.call('GET', '/v1/messages?conversation_id=b-private&limit=100', {
    key: b.api_key,
  });
  return JSON.stringify(res.json);
}

describe('fuzzed MCP requests', () => {
  test(`never 5xx; failures are tool errors with API codes; other tenants untouched (seed ${seed})`, async () => {
    const before = await bState();
    const statuses: Record<string, number> = {};
    await fc.assert(
      fc.asyncProperty(body, async (payload) => {
        const res = await send(payload, statuses);
        if (res.status !== 200) return;
        const rpc = res.json;
        expect(rpc.jsonrpc).toBe('2.0');
        if (rpc.error) {
          // A protocol-level refusal (unknown method, invalid params): JSON-RPC's own codes.
          expect(typeof rpc.error.code).toBe('number');
          return;
        }
        if (rpc.result && !rpc.result.isError) expectNoneOfB(rpc.result);
        if (rpc.result?.isError) expectToolError(rpc.result);
      }),
      { numRuns: RUNS, seed },
    );
    expect(await bState()).toBe(before);
    process.stderr.write(`mcp fuzz: ${RUNS} requests, statuses ${JSON.stringify(statuses)}\n`);
  }, 120_000);

  test(`times at the ends of the range, id spellings, content at the limit (seed ${seed})`, async () => {
    const before = await bState();
    const statuses: Record<string, number> = {};
    const outcomes: Record<string, number> = {};
    await fc.assert(
      fc.asyncProperty(
        mcpEdgeCall([...aIds, ...bIds], t.config.MAX_CONTENT_CHARS, MARKER),
        async (params) => {
          const res = await send({ jsonrpc: '2.0', id: 1, method: 'tools/call', params }, statuses);
          expect(res.status).toBe(200);
          const result = res.json.result;
          const outcome = `${params.name} ${result.isError ? JSON.parse(result.content[0].text).error.code : 'ok'}`;
          outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
          if (result.isError) expectToolError(result);
          else expectNoneOfB(result);
        },
      ),
      { numRuns: EDGE_RUNS, seed },
    );
    expect(await bState()).toBe(before);
    process.stderr.write(`mcp edge fuzz: ${EDGE_RUNS} calls, ${JSON.stringify(outcomes)}\n`);
  }, 120_000);
});
