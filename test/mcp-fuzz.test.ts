// Generated MCP traffic: tool calls with arguments of every kind (hostile strings, wrong types,
// unknown fields, nesting), unknown tools and malformed JSON-RPC, from one tenant. Whatever is
// sent, the answer is never a 5xx, a tool failure is a tool error carrying a documented API
// error code, and the other tenant's data does not change. FUZZ_SEED replays a run.
import { describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { anyJson, hostileString } from './support/fuzz';
import { sharedApp } from './support/app';

const t = await sharedApp();
const RUNS = 400;
const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);

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

/** Argument values: valid-looking ones mixed with anything JSON can hold. */
const value = fc.oneof(
  anyJson,
  hostileString,
  fc.constantFrom(...bIds),
  fc.uuid(),
  fc.integer({ min: -5, max: 500 }),
  fc.constantFrom('user', 'assistant', 'robot', 'asc', 'desc', 'hybrid', 'fulltext', 'semantic'),
);
const message = fc.dictionary(
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
        const res = await t.call('POST', '/mcp', {
          key: a.api_key,
          body: payload,
          headers: { accept: 'application/json, text/event-stream' },
        });
        statuses[res.status] = (statuses[res.status] ?? 0) + 1;
        expect(res.status).toBeLessThan(500);
        if (res.status !== 200) return;
        const rpc = res.json;
        expect(rpc.jsonrpc).toBe('2.0');
        if (rpc.error) {
          // A protocol-level refusal (unknown method, invalid params): JSON-RPC's own codes.
          expect(typeof rpc.error.code).toBe('number');
          return;
        }
        if (rpc.result && !rpc.result.isError) {
          // No message of the other tenant ever comes back, and none is deleted.
          const found = [...messagesIn(rpc.result.structuredContent)].map((m) => m.id);
          const deleted = rpc.result.structuredContent?.deleted
            ? [rpc.result.structuredContent.id]
            : [];
          for (const id of [...found, ...deleted]) expect(bIds).not.toContain(id);
        }
        if (rpc.result?.isError) {
          const error = JSON.parse(rpc.result.content[0].text).error;
          expect(TOOL_ERROR_CODES.has(error.code) ? error.code : { unexpected: error }).toBe(
            error.code,
          );
          expect(error.request_id).toBeString();
        }
      }),
      { numRuns: RUNS, seed },
    );
    expect(await bState()).toBe(before);
    process.stderr.write(`mcp fuzz: ${RUNS} requests, statuses ${JSON.stringify(statuses)}\n`);
  }, 120_000);
});
