// The budget oracle, fuzzed (fast-check): every route under every path spelling, and JSON-RPC
// single messages and batches on the MCP endpoint. After each generated request the budgets
// are read back (meters), and what was spent must be what the route the router matched costs:
// one count of its budget, paid by the tenant of a valid key or else the client's address;
// nothing for the probes; one per message on the MCP endpoint (a tool call as its HTTP route,
// anything else one read); exactly one for a request that matched no route. A second property
// gives tenants small budgets and checks that no spelling and no batch gets more done than
// the budget allows. Replay a run with FUZZ_SEED=<the seed printed below>.
import { afterAll, describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import { rowsOf } from '../src/db/raw';
import { ADMIN_KEY, buildTestApp } from './support/app';
import {
  type Cost,
  type RpcBody,
  rpcBody,
  rpcText,
  type Spelling,
  spelling,
  writeHeavyBody,
} from './support/budget-fuzz';
import { type Fixture, type FuzzRequest, routeRequest, routeSpecs } from './support/fuzz';
import { fuzzMarker } from './support/fuzz-values';

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Date.now() % 2 ** 31;
console.log(
  `budget fuzz seed ${SEED} (replay: FUZZ_SEED=${SEED} bun test test/budget-fuzz.test.ts)`,
);

/** Generated requests per route, and MCP requests, in the accounting property. */
const RUNS_PER_ROUTE = 40;
const MCP_RUNS = 400;
/** Tenants with small budgets in the cut-off property. */
const CUTOFF_RUNS = 100;
/** Slow routes (a retention run scans every tenant) are left to test/fuzz.test.ts. */
const SKIPPED = new Set(['/v1/admin/retention/run', '/v1/admin/embeddings/reindex']);
/** Every budget far above what the run spends, so that each count can be read back exactly. */
const LIMIT = 1_000_000;
const IP = '10.77.0.1';
const ACCEPT = 'application/json, text/event-stream';
const MAX_BODY_BYTES = 64 * 1024;

const t = await buildTestApp({
  LOG_LEVEL: 'info',
  MAX_BODY_BYTES: String(MAX_BODY_BYTES),
  // One window for the whole run: nothing resets between two readings.
  RATE_LIMIT_WINDOW_MS: String(3_600_000),
  RATE_LIMIT_WRITE_PER_MINUTE: String(LIMIT),
  RATE_LIMIT_READ_PER_MINUTE: String(LIMIT),
  RATE_LIMIT_ADMIN_PER_MINUTE: String(LIMIT),
});
afterAll(() => t.close());

// ---- fixture: the data the route generators of test/support/fuzz.ts point at ----

async function seeded(name: string, conversations: string[]) {
  const tenant = await t.tenant(name);
  const created = await t.call('POST', '/v1/messages/batch', {
    key: tenant.api_key,
    body: {
      messages: conversations.map((c, i) => ({
        conversation_id: c,
        role: 'user',
        content: `m${i}`,
      })),
    },
  });
  const page = await t.call('GET', '/v1/messages?limit=1', { key: tenant.api_key });
  const ids = created.json.messages.map((m: { id: string }) => m.id) as string[];
  return { tenant, ids, cursors: [page.json.next_cursor as string] };
}
const A = await seeded('budget A', ['a-one', 'a-two']);
const B = await seeded('budget B', ['b-one', 'b-two']);
const victim = await t.tenant('budget victim');
const disabled = await t.tenant('budget disabled');
await t.call('PATCH', `/v1/admin/tenants/${disabled.id}`, {
  key: ADMIN_KEY,
  body: { disabled: true },
});
const rotated = await t.tenant('budget rotated');
await t.call('POST', `/v1/admin/tenants/${rotated.id}/keys`, { key: ADMIN_KEY, body: {} });
const fixture: Fixture = {
  a: {
    key: A.tenant.api_key,
    messageIds: A.ids,
    conversations: ['a-one', 'a-two'],
    cursors: A.cursors,
  },
  b: { messageIds: B.ids, conversations: ['b-one', 'b-two'], cursors: B.cursors, words: ['m0'] },
  victimId: victim.id,
  disabledKey: disabled.api_key,
  rotatedOutKey: rotated.api_key,
  maxBodyBytes: MAX_BODY_BYTES,
  maxContentChars: t.config.MAX_CONTENT_CHARS,
  marker: fuzzMarker(SEED),
};

// ---- the oracle ----

/** The counters a request can spend: a budget, paid by the tenant A or by the address IP. */
const COUNTERS = ['write:tenant', 'read:tenant', 'write:ip', 'read:ip', 'admin:ip'] as const;
type Counter = (typeof COUNTERS)[number];
type Counts = Record<Counter, number>;
const zero = (): Counts => ({
  'write:tenant': 0,
  'read:tenant': 0,
  'write:ip': 0,
  'read:ip': 0,
  'admin:ip': 0,
});

/** One request per counter that spends exactly that counter; the headers tell its count. */
const METERS: Record<Counter, { method: string; path: string; key?: string; raw?: string }> = {
  'write:tenant': { method: 'POST', path: '/v1/messages', key: A.tenant.api_key, raw: '{}' },
  'read:tenant': { method: 'GET', path: '/v1/messages?limit=0', key: A.tenant.api_key },
  'write:ip': { method: 'POST', path: '/v1/messages', raw: '{}' },
  'read:ip': { method: 'GET', path: '/v1/messages?limit=0' },
  'admin:ip': { method: 'GET', path: '/v1/admin/tenants?limit=0', key: ADMIN_KEY },
};

/** Every counter's count so far (each reading spends one of each, accounted for in `spent`). */
async function counts(): Promise<Counts> {
  const out = zero();
  for (const counter of COUNTERS) {
    const m = METERS[counter];
    const res = await t.call(m.method, m.path, {
      key: m.key,
      raw: m.raw,
      ip: IP,
      headers: m.raw ? { 'content-type': 'application/json' } : {},
    });
    out[counter] = LIMIT - Number(res.headers.get('ratelimit-remaining'));
  }
  return out;
}

let before = await counts();
/** What the requests sent since the last reading spent, per counter (the meters left out). */
async function spent(): Promise<Counts> {
  const now = await counts();
  const delta = zero();
  for (const c of COUNTERS) delta[c] = now[c] - before[c] - 1;
  before = now;
  return delta;
}

/** How a route the router matched is counted (README: rate limits), by its registered path. */
function costOf(method: string, route: string): Cost | 'per-message' {
  const read = method === 'GET' || method === 'HEAD';
  if (read && (route === '/livez' || route === '/readyz')) return 'free';
  if (method === 'POST' && route === '/mcp') return 'per-message';
  if (['/metrics', '/openapi.json', '/docs'].includes(route) || route.startsWith('/docs/')) {
    return 'admin';
  }
  if (route.startsWith('/v1/admin/')) return 'admin';
  if (method === 'POST' && route === '/v1/search') return 'read';
  return read ? 'read' : 'write';
}

let sequence = 0;
/** The route the router matched for a request, from its log line ('unmatched' for none). */
async function routeOf(requestId: string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    const line = t.logs.lines.find((l) => l.request_id === requestId && 'route' in l);
    if (line) return line.route as string;
    await Bun.sleep(5);
  }
  throw new Error(`no log line for ${requestId}`);
}

/** Requests that count themselves again as another route: a bug in routePathOf. */
const recounted = () => t.logs.lines.filter((l) => typeof l.counted_as === 'string');

/**
 * Sends one request and checks what it spent. `expected` gets the matched route and the
 * status, and says what must have been spent (null: exactly one count, any counter).
 */
async function sendAndAccount(
  req: { method: string; path: string; headers: Record<string, string>; raw?: string | Uint8Array },
  expected: (route: string, status: number) => Partial<Counts> | null,
  label: string,
) {
  const id = `budget-${++sequence}`;
  const res = await t.call(req.method, req.path, {
    raw: req.raw,
    ip: IP,
    headers: { ...req.headers, 'x-request-id': id },
  });
  expect(res.status, label).toBeLessThan(500);
  const route = await routeOf(id);
  const delta = await spent();
  const want = expected(route, res.status);
  const where = `${label} -> ${res.status}, route ${route}, spent ${JSON.stringify(delta)}`;
  if (want === null) {
    expect(
      Object.values(delta).reduce((a, b) => a + b, 0),
      where,
    ).toBe(1);
  } else {
    expect(delta, where).toEqual({ ...zero(), ...want });
  }
  expect(recounted(), where).toEqual([]);
}

/** Who pays for a tenant-route request: the tenant for A's key, the address for anything else. */
const payer = (req: FuzzRequest) => (req.auth.as === 'tenant' ? 'tenant' : 'ip');

const params = (numRuns: number) => ({ seed: SEED, numRuns, endOnFailure: true });

describe('every spelling of every route is counted as the route it reaches', () => {
  for (const spec of routeSpecs(fixture).filter((s) => !SKIPPED.has(s.label))) {
    test(`${spec.method} ${spec.label}`, async () => {
      const arb = fc
        .tuple(routeRequest(fixture, spec), fc.nat())
        .chain(([req, n]) => spelling(req.path).map((s: Spelling) => ({ req, s, n })));
      await fc.assert(
        fc.asyncProperty(arb, async ({ req, s }) => {
          const label = `${req.method} ${s.path.slice(0, 100)} (${s.kind}, auth ${req.auth.as})`;
          await sendAndAccount(
            { ...req, path: s.path },
            (route) => {
              if (route === 'unmatched') return null;
              const cost = costOf(req.method, route);
              if (cost === 'free') return {};
              if (cost === 'admin') return { 'admin:ip': 1 };
              if (cost === 'per-message') throw new Error('MCP is fuzzed below');
              return { [`${cost}:${payer(req)}`]: 1 };
            },
            label,
          );
        }),
        params(RUNS_PER_ROUTE),
      );
    }, 120_000);
  }
});

/** What an MCP request of tenant A must spend: each message its cost (README: MCP). */
function mcpCost(body: RpcBody, status: number): Partial<Counts> {
  if (body.kind === 'junk') return { 'read:tenant': 1 };
  const messages = body.messages;
  if (messages.length === 0) return { 'read:tenant': 1 };
  const out = zero();
  // Tool calls are counted as they run: only when the transport handled the request.
  const ran = status === 200 || status === 202;
  for (const m of messages) {
    if (m.tool && !ran) continue;
    out[`${m.cost === 'write' ? 'write' : 'read'}:tenant`]++;
  }
  return out;
}

describe('the MCP endpoint counts every message of a batch, under every spelling', () => {
  test('single messages, batches and junk', async () => {
    const arb = fc.tuple(
      rpcBody,
      spelling('/mcp'),
      fc.oneof(
        {
          weight: 6,
          arbitrary: fc.constant({ header: `Bearer ${A.tenant.api_key}`, as: 'tenant' }),
        },
        fc.constantFrom(
          { header: undefined, as: 'nobody' },
          { header: `Bearer ${disabled.api_key}`, as: 'disabled' },
          { header: `Bearer ts_${'A'.repeat(43)}`, as: 'nobody' },
          { header: 'Bearer nope', as: 'nobody' },
        ),
      ),
    );
    await fc.assert(
      fc.asyncProperty(arb, async ([body, s, auth]) => {
        const headers: Record<string, string> = {
          accept: ACCEPT,
          'content-type': 'application/json',
        };
        if (auth.header) headers.authorization = auth.header;
        const size = body.kind === 'junk' ? 'junk' : `${body.kind} of ${body.messages.length}`;
        const label = `POST ${s.path} (${s.kind}, ${size}, auth ${auth.as})`;
        await sendAndAccount(
          { method: 'POST', path: s.path, headers, raw: rpcText(body) },
          (route, status) => {
            if (route === 'unmatched') return null;
            if (auth.as !== 'tenant') return { 'write:ip': 1 };
            return mcpCost(body, status);
          },
          label,
        );
      }),
      params(MCP_RUNS),
    );
  }, 300_000);
});

describe('no spelling and no batch gets more done than the budget', () => {
  test('writes stored and calls answered stay within small budgets', async () => {
    let run = 0;
    const step = fc.oneof(
      {
        weight: 3,
        arbitrary: fc.tuple(
          fc.constant('mcp' as const),
          fc.oneof(writeHeavyBody, rpcBody),
          spelling('/mcp'),
        ),
      },
      fc.tuple(fc.constant('http' as const), fc.constant(null), spelling('/v1/messages')),
    );
    const arb = fc.record({
      write: fc.integer({ min: 1, max: 12 }),
      read: fc.integer({ min: 1, max: 12 }),
      steps: fc.array(step, { minLength: 1, maxLength: 4 }),
    });
    await fc.assert(
      fc.asyncProperty(arb, async ({ write, read, steps }) => {
        const ip = `10.78.${(++run >> 8) & 255}.${run & 255}`;
        const tenant = await t.tenant(`cutoff ${run}`);
        const patch = await t.call('PATCH', `/v1/admin/tenants/${tenant.id}`, {
          key: ADMIN_KEY,
          body: { rate_limit_write_per_minute: write, rate_limit_read_per_minute: read },
        });
        expect(patch.status).toBe(200);
        const done = { write: 0, read: 0 };
        const log: string[] = [];
        for (const [kind, body, s] of steps) {
          const headers = {
            authorization: `Bearer ${tenant.api_key}`,
            accept: ACCEPT,
            'content-type': 'application/json',
          };
          if (kind === 'http') {
            const res = await t.call('POST', s.path, {
              ip,
              headers,
              raw: JSON.stringify({ conversation_id: 'budget', role: 'user', content: 'http' }),
            });
            expect(res.status).toBeLessThan(500);
            if (res.status === 201) done.write++;
            log.push(`POST ${s.path} -> ${res.status}`);
            continue;
          }
          const res = await t.call('POST', s.path, { ip, headers, raw: rpcText(body!) });
          expect(res.status).toBeLessThan(500);
          log.push(`POST ${s.path} ${body!.kind} -> ${res.status}`);
          if (res.status !== 200 || body!.kind === 'junk') continue;
          const answers: any[] = Array.isArray(res.json) ? res.json : [res.json];
          const byTool = new Map<unknown, string>();
          for (const m of body!.messages) {
            if (m.tool) byTool.set((m.message as { id: unknown }).id, m.tool);
          }
          for (const a of answers) {
            const tool = byTool.get(a.id);
            if (!tool || !a.result || a.result.isError) continue;
            done[tool === 'add_messages' || tool === 'delete_message' ? 'write' : 'read']++;
          }
        }
        const [stored] = rowsOf<{ n: number }>(
          await t.db.execute(
            sql`select count(*)::int as n from messages where tenant_id = ${tenant.id}`,
          ),
        );
        const where = `budgets w${write}/r${read}: ${log.join('; ')}`;
        expect(stored!.n, where).toBeLessThanOrEqual(write);
        expect(done.write, where).toBeLessThanOrEqual(write);
        expect(done.read, where).toBeLessThanOrEqual(read);
      }),
      params(CUTOFF_RUNS),
    );
  }, 300_000);
});
