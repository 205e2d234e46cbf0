// Property-based fuzzing of every route (fast-check): hostile bodies, paths, queries, cursors,
// keys and headers; times at both ends of the range, ids in every UUID spelling, content at the
// size limit in multibyte scripts. A marker planted in every content, query and metadata value
// must never reach a log line. Replay a run with FUZZ_SEED=<the seed printed below>.
import { afterAll, describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import fc from 'fast-check';
import { rowsOf } from '../src/db/raw';
import { ADMIN_KEY, buildTestApp } from './support/app';
import { checkResponse } from './support/fuzz-oracle';
import {
  type Fixture,
  type FuzzRequest,
  routeRequest,
  routeSpecs,
  strayRequest,
} from './support/fuzz';
import { edgeRequest, fuzzMarker, linesWithMarker } from './support/fuzz-values';

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Date.now() % 2 ** 31;
console.log(`fuzz seed ${SEED} (replay: FUZZ_SEED=${SEED} bun test test/fuzz.test.ts)`);

/** Requests per batch: the database is compared once per batch. */
const BATCH_SIZE = 4;
/** Batches per route; slow or uninteresting routes (a retention run scans every tenant) get fewer. */
const BATCHES_PER_ROUTE = 100;
const SLOW_ROUTES: Record<string, number> = {
  '/v1/admin/retention/run': 15,
  '/v1/admin/embeddings/reindex': 40,
  '/openapi.json': 40,
  '/docs': 40,
};
const STRAY_BATCHES = 200;
/** Batches of otherwise valid requests with one value at an edge (see support/fuzz-values.ts). */
const EDGE_BATCHES = 150;
const MIN_REQUESTS = 10_000;
/** Small, so that over-size bodies are cheap to generate. */
const MAX_BODY_BYTES = 256 * 1024;

const MARKER = fuzzMarker(SEED);

// An app of its own, logging every request: no line may hold the marker, and an error line or
// a value the database refused after validation is a finding.
const t = await buildTestApp({ LOG_LEVEL: 'info', MAX_BODY_BYTES: String(MAX_BODY_BYTES) });
afterAll(() => t.close());

const must = async (res: Promise<{ status: number; json: any; text: string }>, status: number) => {
  const r = await res;
  if (r.status !== status) throw new Error(`fixture setup: ${r.status} ${r.text}`);
  return r.json;
};

async function seedTenant(name: string, conversations: string[], content: (i: number) => string) {
  const tenant = await t.tenant(name);
  const created = await must(
    t.call('POST', '/v1/messages/batch', {
      key: tenant.api_key,
      body: {
        messages: conversations.flatMap((c, j) =>
          [0, 1, 2].map((i) => ({ conversation_id: c, role: 'user', content: content(j * 3 + i) })),
        ),
      },
    }),
    201,
  );
  const cursors: string[] = [];
  for (const path of [
    '/v1/messages?limit=1',
    `/v1/messages?limit=1&conversation_id=${conversations[0]}`,
    '/v1/messages?limit=1&order=desc',
    '/v1/conversations?limit=1',
  ]) {
    cursors.push((await must(t.call('GET', path, { key: tenant.api_key }), 200)).next_cursor);
  }
  return { tenant, ids: created.messages.map((m: { id: string }) => m.id) as string[], cursors };
}

const hex = () => crypto.randomUUID().replaceAll('-', '');
const bWords = [`bsecret${hex()}`, `bsecret${hex()}`];
const bPrivate = `b-private-${hex().slice(0, 8)}`;
const A = await seedTenant('fuzz A', ['a-one', 'a-two', 'shared'], (i) => `a message ${i}`);
const B = await seedTenant('fuzz B', [bPrivate, 'shared'], (i) => `${bWords[i % 2]} ${i}`);
const victim = await t.tenant('fuzz victim');
const disabled = await t.tenant('fuzz disabled');
await must(
  t.call('PATCH', `/v1/admin/tenants/${disabled.id}`, { key: ADMIN_KEY, body: { disabled: true } }),
  200,
);
const rotated = await t.tenant('fuzz rotated');
await must(
  t.call('POST', `/v1/admin/tenants/${rotated.id}/keys`, {
    key: ADMIN_KEY,
    body: { grace_seconds: 0 },
  }),
  201,
);
const adminCursor = (
  await must(t.call('GET', '/v1/admin/tenants?limit=1', { key: ADMIN_KEY }), 200)
).next_cursor as string;

const fixture: Fixture = {
  a: {
    key: A.tenant.api_key,
    messageIds: A.ids,
    conversations: ['a-one', 'a-two', 'shared'],
    cursors: [...A.cursors, adminCursor],
  },
  b: { messageIds: B.ids, conversations: [bPrivate, 'shared'], cursors: B.cursors, words: bWords },
  victimId: victim.id,
  disabledKey: disabled.api_key,
  rotatedOutKey: rotated.api_key,
  maxBodyBytes: MAX_BODY_BYTES,
  maxContentChars: t.config.MAX_CONTENT_CHARS,
  marker: MARKER,
};
/** Nothing any request of the fuzzer gets back may contain these. */
const secrets = [
  ...bWords,
  ...B.ids,
  B.tenant.api_key,
  A.tenant.api_key,
  ADMIN_KEY,
  disabled.api_key,
  rotated.api_key,
];

const tenantIds = [A.tenant.id, B.tenant.id, victim.id];

/**
 * One cheap digest of everything the fuzzed tenants own (tenant rows, keys, conversations,
 * messages, idempotency keys, search rows) plus the global tenant and key counts; the
 * bystander's digest apart, since nothing may ever change it.
 */
async function snapshot(): Promise<{ fuzzed: string; bystander: string }> {
  const digest = (tenants: string[]) => {
    const ids = `{${tenants.join(',')}}`;
    return sql`md5(concat_ws('|',
    (select string_agg(concat_ws(',', id, name, disabled, settings::text, updated_at), ';' order by id)
       from tenants where id = any(${ids}::uuid[])),
    (select string_agg(concat_ws(',', id, expires_at), ';' order by id)
       from api_keys where tenant_id = any(${ids}::uuid[])),
    (select string_agg(concat_ws(',', tenant_id, id, created_at), ';' order by tenant_id, id)
       from conversations where tenant_id = any(${ids}::uuid[])),
    (select string_agg(concat_ws(',', id, archived, archived_at, md5(content), metadata::text,
       created_at), ';' order by id) from messages where tenant_id = any(${ids}::uuid[])),
    (select string_agg(concat_ws(',', tenant_id, key, response_status), ';' order by tenant_id, key)
       from idempotency_keys where tenant_id = any(${ids}::uuid[])),
    (select count(*) from message_search where tenant_id = any(${ids}::uuid[]))))`;
  };
  const [row] = rowsOf<{ fuzzed: string; bystander: string }>(
    await t.db.execute(sql`select
      ${digest([A.tenant.id, victim.id])} || (select count(*) from tenants)::text
        || ':' || (select count(*) from api_keys)::text as fuzzed,
      ${digest([B.tenant.id])} as bystander`),
  );
  return row!;
}

const bystander = (await snapshot()).bystander;
let baseline = await snapshot();
let sent = 0;
/** Log lines already checked for the marker. */
let logsChecked = 0;
const statuses = new Map<number, number>();

/**
 * Sends a batch of generated requests and checks every answer. Then the database is compared,
 * once per batch to keep it cheap: no write ever touches the bystander, and a batch in which
 * every write was refused must have changed nothing at all.
 */
async function sendBatch(batch: FuzzRequest[]) {
  const outcomes: string[] = [];
  let changed = false;
  let wrote = false;
  for (const req of batch) {
    const res = await t.call(req.method, req.path, { raw: req.raw, headers: req.headers });
    sent++;
    statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    outcomes.push(`${req.method} ${req.path.slice(0, 80)} -> ${res.status}`);
    // Lines are written to the capture synchronously: these are the request's own.
    const leaked = linesWithMarker(t.logs.raw.slice(logsChecked), MARKER);
    logsChecked = t.logs.raw.length;
    expect(leaked, `logged a planted value: ${outcomes.join('; ')}`).toEqual([]);
    checkResponse(req, res, secrets);
    if (req.method === 'GET' || req.method === 'HEAD') continue;
    wrote = true;
    if (res.status < 400) changed = true;
  }
  if (!wrote) return;
  const now = await snapshot();
  expect(now.bystander, `bystander changed by: ${outcomes.join('; ')}`).toBe(bystander);
  if (!changed) {
    expect(now.fuzzed, `refused writes changed the database: ${outcomes.join('; ')}`).toBe(
      baseline.fuzzed,
    );
  }
  baseline = now;
}

const params = (numRuns: number) => ({ seed: SEED, numRuns, endOnFailure: true });
const batchOf = (req: fc.Arbitrary<FuzzRequest>) =>
  fc.array(req, { minLength: BATCH_SIZE, maxLength: BATCH_SIZE });

describe('fuzzed requests to every route never get a 5xx, and refusals change nothing', () => {
  for (const spec of routeSpecs(fixture)) {
    test(`${spec.method} ${spec.label}`, async () => {
      const runs = SLOW_ROUTES[spec.label] ?? BATCHES_PER_ROUTE;
      await fc.assert(
        fc.asyncProperty(batchOf(routeRequest(fixture, spec)), sendBatch),
        params(runs),
      );
    }, 60_000);
  }

  test('times at the ends of the range, id spellings and content at the limit', async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(edgeRequest(fixture)), sendBatch),
      params(EDGE_BATCHES),
    );
  }, 60_000);

  test('unknown routes and methods get 404 in the error shape', async () => {
    await fc.assert(
      fc.asyncProperty(batchOf(strayRequest(fixture)), sendBatch),
      params(STRAY_BATCHES),
    );
  }, 60_000);
});

describe('after the fuzzing', () => {
  test('the app still answers, logged no error and no planted value', async () => {
    console.log(`fuzz: ${sent} requests, statuses ${JSON.stringify(Object.fromEntries(statuses))}`);
    expect(sent).toBeGreaterThanOrEqual(MIN_REQUESTS);
    expect((await t.call('GET', '/livez')).status).toBe(200);
    expect((await t.call('GET', '/readyz')).status).toBe(200);
    await Bun.sleep(10);
    const findings = t.logs.lines.filter(
      (l) =>
        l.level === 'error' ||
        l.level === 'fatal' ||
        l.msg === 'the database refused a value that passed validation',
    );
    expect(findings).toEqual([]);
    expect(t.logs.lines.length).toBeGreaterThanOrEqual(sent);
    expect(linesWithMarker(t.logs.raw, MARKER)).toEqual([]);
  });

  test("the bystander's data is all there, unchanged", async () => {
    expect((await snapshot()).bystander).toBe(bystander);
    const page = await t.call('GET', '/v1/messages?limit=200', { key: B.tenant.api_key });
    expect(page.json.messages.map((m: { id: string }) => m.id).sort()).toEqual([...B.ids].sort());
    for (const word of bWords) expect(page.text).toContain(word);
  });
});
