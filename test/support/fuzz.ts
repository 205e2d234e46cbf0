// Generators of hostile requests for test/fuzz.test.ts (its oracle: fuzz-oracle.ts).
import fc from 'fast-check';
import { ADMIN_KEY } from './app';
import { extremeTime, limitContent, planted, plantedJson, uuidSpelling } from './fuzz-values';

/** Who an Authorization header authenticates as, by construction of the generator. */
export type AuthAs = 'tenant' | 'admin' | 'disabled' | 'nobody';

export interface FuzzRequest {
  method: string;
  path: string;
  /** The Authorization header, or undefined for none. */
  auth: { header?: string; as: AuthAs };
  headers: Record<string, string>;
  raw?: string | Uint8Array;
}

export interface FuzzResponse {
  status: number;
  headers: Headers;
  json: any;
  text: string;
}

/** The data the generators point at, created before the fuzzing starts. */
export interface Fixture {
  /** The tenant whose key is fuzzed. */
  a: { key: string; messageIds: string[]; conversations: string[]; cursors: string[] };
  /** The bystander: its key is never sent; its ids, cursors and words are. */
  b: { messageIds: string[]; conversations: string[]; cursors: string[]; words: string[] };
  /** A tenant the admin routes may change (B is never named to them). */
  victimId: string;
  disabledKey: string;
  rotatedOutKey: string;
  maxBodyBytes: number;
  maxContentChars: number;
  /** Planted in every content, query and metadata value: no log line may contain it. */
  marker: string;
}

/** Strings that have broken parsers, databases and templates before. */
export const HOSTILE_STRINGS = [
  '',
  ' ',
  "'; DROP TABLE messages; --",
  "' OR '1'='1",
  '1); select pg_sleep(5); --',
  '$1',
  '<script>alert(1)</script>',
  '<img src=x onerror=alert(1)>',
  '{{7*7}}${7*7}',
  '../../../../etc/passwd',
  '\u0000',
  'a\u0000b',
  '\ud800',
  'x\udfff',
  '\udbff\udfff',
  '\u202egnp.exe',
  'مرحبا بالعالم',
  'שלום עולם',
  '👩‍👩‍👧‍👦🏳️‍🌈🇺🇳',
  '💩'.repeat(7),
  '\ufeffbom',
  '\r\n\t\u000b',
  '%00%2F%2e%2e',
  '%s%s%n',
  'null',
  'NaN',
  '[]',
  '{}',
  '\\',
  '"',
  '-- or ! & | :* <-> ()',
];

/** UTF-16 code units, lone surrogates and NUL included. */
const utf16 = fc.string({
  unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
  maxLength: 24,
});

export const hostileString = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
  { weight: 2, arbitrary: fc.string({ maxLength: 30 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 2, arbitrary: utf16 },
);

/** A JSON value of any type (the wrong one, mostly). */
export const anyJson: fc.Arbitrary<unknown> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer(),
  fc.double(),
  fc.constantFrom(1e308, -0, 2 ** 53 + 1, 0.1),
  hostileString,
  fc.array(fc.oneof(fc.integer(), hostileString), { maxLength: 3 }),
  fc.dictionary(hostileString, fc.oneof(fc.integer(), hostileString), { maxKeys: 3 }),
);

/** Objects nested deeper than metadata allows (5) and deeper than the parser allows (32). */
const deepValue = fc.tuple(fc.integer({ min: 4, max: 40 }), fc.boolean()).map(([depth, arrays]) => {
  let v: unknown = 'leaf';
  for (let i = 0; i < depth; i++) v = arrays ? [v] : { d: v };
  return arrays ? { d: v } : v;
});

/** Metadata (or tool calls) over the 16 KiB / 64 KiB limits, or just under them. */
const hugeValue = fc.oneof(
  fc.integer({ min: 15_000, max: 70_000 }).map((n) => ({ big: 'x'.repeat(n) })),
  fc
    .integer({ min: 500, max: 3_000 })
    .map((n) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, i]))),
);

/** A string beside a limit: the content limit, the 256 of name, the 128 of conversation ids. */
const oversize = (f: Fixture) =>
  fc
    .constantFrom(129, 257, 2001, f.maxContentChars, f.maxContentChars + 1, 100_000)
    .map((n) => 'y'.repeat(n));

/** Variants of a valid object: fields dropped, added, mistyped, oversized, deep or huge. */
function mutated(
  f: Fixture,
  base: fc.Arbitrary<Record<string, unknown>>,
  fields: readonly string[],
): fc.Arbitrary<unknown> {
  const field = fc.constantFrom(...fields);
  return fc.oneof(
    { weight: 2, arbitrary: base },
    fc.tuple(base, field).map(([o, k]) => {
      const copy = { ...o };
      delete copy[k];
      return copy;
    }),
    fc
      .tuple(
        base,
        fc.oneof(fc.constantFrom('tenant_id', 'id', '__proto__'), hostileString),
        anyJson,
      )
      .map(([o, k, v]) => ({ ...o, [k]: v })),
    fc.tuple(base, field, anyJson).map(([o, k, v]) => ({ ...o, [k]: v })),
    fc.tuple(base, field, oversize(f)).map(([o, k, v]) => ({ ...o, [k]: v })),
    fc
      .tuple(base, fc.constantFrom('metadata', 'tool_calls'), fc.oneof(deepValue, hugeValue))
      .map(([o, k, v]) => ({ ...o, [k]: k === 'tool_calls' ? [v] : v })),
    { weight: 1, arbitrary: anyJson },
  );
}

const conversationId = (f: Fixture) =>
  fc.oneof(
    fc.constantFrom(...f.a.conversations, ...f.b.conversations),
    fc.stringMatching(/^[A-Za-z0-9._:-]{1,20}$/),
    hostileString,
  );

const message = (f: Fixture) =>
  mutated(
    f,
    fc.record(
      {
        conversation_id: conversationId(f),
        role: fc.oneof(
          fc.constantFrom('user', 'assistant', 'system', 'tool'),
          fc.constantFrom('User', 'admin', ''),
        ),
        content: fc.oneof(
          { weight: 5, arbitrary: planted(hostileString, f.marker) },
          { weight: 1, arbitrary: limitContent(f.maxContentChars, f.marker) },
        ),
        name: hostileString,
        tool_call_id: hostileString,
        tool_calls: fc.array(fc.dictionary(fc.string(), anyJson, { maxKeys: 2 }), { maxLength: 2 }),
        metadata: plantedJson(fc.dictionary(hostileString, anyJson, { maxKeys: 3 }), f.marker),
        created_at: fc.oneof(
          fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
          extremeTime,
          fc.constantFrom(
            '0000-01-01T00:00:00Z',
            '-000001-01-01T00:00:00Z',
            '0001-01-01T00:00:00+01:00',
            '2024/01/02',
            '2024-02-30T00:00:00Z',
            '9999-12-31T23:59:59Z',
            'yesterday',
          ),
        ),
      },
      { requiredKeys: ['conversation_id', 'role', 'content'] },
    ),
    ['conversation_id', 'role', 'content', 'name', 'tool_calls', 'metadata', 'created_at'],
  );

/** The bodies of every route that takes one, valid ones included. */
const bodies = (f: Fixture) => ({
  message: message(f),
  batch: fc.oneof(
    mutated(f, fc.record({ messages: fc.array(message(f), { maxLength: 4 }) }), ['messages']),
    fc.constant({
      messages: Array.from({ length: 101 }, () => ({
        conversation_id: 'c',
        role: 'user',
        content: 'x',
      })),
    }),
  ),
  search: mutated(
    f,
    fc.record(
      {
        // The bystander's words still match its messages if isolation fails: `or` the marker.
        query: fc.oneof(
          fc.constantFrom(...f.b.words).map((w) => `${w} or ${f.marker}`),
          planted(hostileString, f.marker),
        ),
        mode: fc.constantFrom('hybrid', 'semantic', 'fulltext', 'HYBRID'),
        limit: fc.oneof(fc.integer({ min: -5, max: 60 }), fc.constantFrom('5', 1.5)),
        include_archived: fc.oneof(fc.boolean(), fc.constant('true')),
        conversation_id: conversationId(f),
        created_after: fc.oneof(
          fc.constantFrom('2020-01-01T00:00:00Z', '0000-01-01T00:00:00Z', '2024/01/02'),
          extremeTime,
        ),
        created_before: fc.oneof(
          fc.constantFrom('2100-01-01T00:00:00+01:00', '2024-02-30T00:00:00Z'),
          extremeTime,
        ),
        metadata: plantedJson(
          fc.oneof(fc.dictionary(hostileString, anyJson, { maxKeys: 2 }), deepValue),
          f.marker,
        ),
      },
      { requiredKeys: ['query'] },
    ),
    ['query', 'mode', 'limit', 'conversation_id', 'created_after', 'created_before', 'metadata'],
  ),
  createTenant: mutated(
    f,
    fc.record(
      {
        name: hostileString,
        archive_after_days: fc.oneof(fc.integer({ min: -1, max: 40_000 }), fc.constant(null)),
        purge_after_days: fc.oneof(fc.integer({ min: -1, max: 40_000 }), fc.constant(null)),
      },
      { requiredKeys: ['name'] },
    ),
    ['name', 'archive_after_days', 'purge_after_days'],
  ),
  patchTenant: mutated(
    f,
    fc.record(
      {
        name: hostileString,
        disabled: fc.oneof(fc.boolean(), fc.constant('true')),
        rate_limit_write_per_minute: fc.oneof(
          fc.integer({ min: 0, max: 20_000_000 }),
          fc.constant(null),
        ),
        rate_limit_read_per_minute: fc.oneof(
          fc.integer({ min: 0, max: 20_000_000 }),
          fc.constant(null),
        ),
        archive_after_days: fc.oneof(fc.integer({ min: 0, max: 40_000 }), fc.constant(null)),
        purge_after_days: fc.oneof(fc.integer({ min: 0, max: 40_000 }), fc.constant(null)),
      },
      { requiredKeys: [] },
    ),
    ['name', 'disabled', 'rate_limit_write_per_minute', 'archive_after_days', 'purge_after_days'],
  ),
  rotate: mutated(
    f,
    fc.record({ grace_seconds: fc.oneof(fc.integer({ min: -1, max: 700_000 }), fc.constant('5')) }),
    ['grace_seconds'],
  ),
  retry: mutated(
    f,
    fc.record({
      tenant_id: fc.oneof(fc.uuid(), uuidSpelling([f.victimId], false), hostileString),
    }),
    ['tenant_id'],
  ),
});

type BodyKind = keyof ReturnType<typeof bodies>;

const oversizeCache = new Map<number, string[]>();
/** Bodies just over and far over the limit, built once (they are hundreds of kilobytes). */
function oversizeBodies(maxBytes: number): string[] {
  let bodies = oversizeCache.get(maxBytes);
  if (!bodies) {
    bodies = [maxBytes + 1, maxBytes * 2].map((n) => `{"content":"${'z'.repeat(n)}"}`);
    oversizeCache.set(maxBytes, bodies);
  }
  return bodies;
}

/** A body as bytes on the wire: JSON, truncated, broken, not UTF-8, oversize, or absent. */
function wire(f: Fixture, value: fc.Arbitrary<unknown>) {
  const json = value.map((v) => JSON.stringify(v) ?? 'null');
  const asJson = (raw: string | Uint8Array) => ({ raw, contentType: 'application/json' });
  return fc.oneof(
    { weight: 6, arbitrary: json.map(asJson) },
    {
      weight: 2,
      arbitrary: fc.tuple(json, fc.nat()).map(([s, n]) => asJson(s.slice(0, n % s.length))),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(json, fc.nat(), fc.constantFrom('{', '}', ',', '"', ':', '\\', 'x', '\u0000'))
        .map(([s, n, c]) => asJson(s.slice(0, n % s.length) + c + s.slice(n % s.length))),
    },
    {
      weight: 1,
      arbitrary: fc
        .constantFrom(
          new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]),
          new Uint8Array([0xef, 0xbb, 0xbf, 0x7b, 0x7d]),
          new Uint8Array([0x22, 0xed, 0xa0, 0x80, 0x22]),
          new Uint8Array([0xc0, 0x80]),
        )
        .map(asJson),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map(asJson) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          json,
          fc.constantFrom(
            'text/plain',
            'application/x-www-form-urlencoded',
            'multipart/form-data; boundary=x',
            'application/JSON',
            'application/json; charset=utf-16',
            'application/vnd.api+json',
            'application/json, text/plain',
            '*/*',
            '',
          ),
        )
        .map(([raw, contentType]) => ({ raw, contentType })),
    },
    { weight: 1, arbitrary: fc.constant({ raw: undefined, contentType: undefined }) },
    { weight: 1, arbitrary: fc.constant({ raw: '', contentType: 'application/json' }) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(...oversizeBodies(f.maxBodyBytes)).map(asJson),
    },
  );
}

/** Authorization headers, each labelled with whom it authenticates as. */
const auth = (f: Fixture, realm: 'tenant' | 'admin' | 'probe') => {
  const right = realm === 'admin' ? ADMIN_KEY : f.a.key;
  const rightAs: AuthAs = realm === 'admin' ? 'admin' : 'tenant';
  const as = (header: string | undefined, who: AuthAs) => ({ header, as: who });
  const printable = fc.string({
    unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)),
    maxLength: 60,
  });
  return fc.oneof(
    { weight: 8, arbitrary: fc.constant(as(`Bearer ${right}`, rightAs)) },
    fc.constantFrom(
      as(`bearer ${right}`, rightAs),
      as(`Bearer   ${right}  `, rightAs),
      as(undefined, 'nobody'),
      as('', 'nobody'),
      as('Bearer', 'nobody'),
      as('Bearer ', 'nobody'),
      as(right, 'nobody'),
      as(`Basic ${right}`, 'nobody'),
      as(`Bearer ${right}x`, 'nobody'),
      as(`Bearer ${right.toUpperCase()}`, 'nobody'),
      as(`Bearer ${right}, Bearer ${right}`, 'nobody'),
      as(`Bearer ${ADMIN_KEY}, Bearer ${f.a.key}`, 'nobody'),
      as(`Bearer ${realm === 'admin' ? f.a.key : ADMIN_KEY}`, 'nobody'),
      as(`Bearer ts_${'A'.repeat(43)}`, 'nobody'),
      as(`Bearer ${f.rotatedOutKey}`, 'nobody'),
      as(`Bearer ${'k'.repeat(70_000)}`, 'nobody'),
      as(`Bearer ${f.disabledKey}`, realm === 'tenant' ? 'disabled' : 'nobody'),
    ),
    printable.map((s) => as(`Bearer ${s}`, 'nobody')),
    printable.map((s) => as(s, 'nobody')),
  );
};

/** Headers beside Authorization: request ids, idempotency keys, odd and huge values. */
const extraHeaders = fc.dictionary(
  fc.constantFrom(
    'x-request-id',
    'idempotency-key',
    'x-forwarded-for',
    'accept',
    'accept-encoding',
    'origin',
    'cookie',
    'x-tenant-id',
    'x-fuzz',
  ),
  fc.oneof(
    fc.constantFrom('req-fuzz.1', 'k1', 'k2', ' spaced ', '1.2.3.4, 5.6.7.8', '*/*', 'gzip'),
    fc.string({
      unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
      maxLength: 200,
    }),
    fc.constantFrom('x'.repeat(129), 'h'.repeat(60_000)),
  ),
  { maxKeys: 3 },
);

/** Percent-encodes any string; a lone surrogate becomes its (invalid) UTF-8 bytes. */
function encode(s: string): string {
  if (s.isWellFormed()) return encodeURIComponent(s);
  return `${encodeURIComponent(s.toWellFormed())}%ED%A0%80`;
}

const uuidish = (ids: string[]) =>
  fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...ids) },
    { weight: 2, arbitrary: fc.uuid() },
    { weight: 2, arbitrary: uuidSpelling(ids, true) },
    fc.constantFrom(
      '00000000-0000-0000-0000-000000000000',
      'ffffffff-ffff-ffff-ffff-ffffffffffff',
      'FFFFFFFF-FFFF-7FFF-BFFF-FFFFFFFFFFFF',
      '{00000000-0000-0000-0000-000000000000}',
      '00000000000000000000000000000000',
      '00000000-0000-0000-0000-00000000000g',
      '00000000-0000-0000-0000-0000000000000',
      'null',
      '%',
      '%ZZ',
      '%E0%A4%A',
      '..',
      '%2e%2e',
      "1' or '1'='1",
    ),
    hostileString.map(encode),
  );

const cursor = (f: Fixture) =>
  fc.oneof(
    fc.constantFrom(...f.b.cursors, ...f.a.cursors),
    fc.constantFrom(...f.b.cursors, ...f.a.cursors).chain((c) =>
      // The payload of one cursor under the signature of another: forged.
      fc.constantFrom(...f.a.cursors).map((other) => `${c.split('.')[0]}.${other.split('.')[1]}`),
    ),
    fc.tuple(fc.constantFrom(...f.a.cursors), fc.nat()).map(([c, n]) => {
      const i = n % c.length;
      return c.slice(0, i) + (c[i] === 'A' ? 'B' : 'A') + c.slice(i + 1);
    }),
    fc
      .constantFrom(...f.b.messageIds)
      .map(
        (id) =>
          `${Buffer.from(JSON.stringify({ k: '2000-01-01T00:00:00.000Z', i: id })).toString('base64url')}.${'A'.repeat(43)}`,
      ),
    fc.constantFrom('.', 'a.', '.b', 'x'.repeat(1025), '%', 'a.b.c'),
    hostileString,
  );

/** A query string of known and unknown keys with good and bad values, encoded or not. */
function queryString(f: Fixture, keys: string[]) {
  const value = fc.oneof(
    fc.constantFrom('1', '50', '200', '0', '201', '-1', '1e1', '0x10', 'NaN', '9'.repeat(30)),
    fc.constantFrom('asc', 'desc', 'ASC', 'true', 'false', 'TRUE', ''),
    fc.constantFrom(...f.a.conversations, ...f.b.conversations),
    cursor(f),
    hostileString,
  );
  const key = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...keys) },
    fc.constantFrom('__proto__', 'constructor', 'tenant_id', 'limit[]', ''),
  );
  return fc
    .tuple(fc.array(fc.tuple(key, value), { maxLength: 4 }), fc.boolean())
    .map(([pairs, encoded]) => {
      if (pairs.length === 0) return '';
      const parts = pairs.map(([k, v]) => (encoded ? `${encode(k)}=${encode(v)}` : `${k}=${v}`));
      return `?${parts.join('&')}`;
    });
}

export interface RouteSpec {
  /** The route as the module declares it, for test names. */
  label: string;
  method: string;
  path: fc.Arbitrary<string>;
  realm: 'tenant' | 'admin' | 'probe';
  body?: BodyKind;
  /** The body may be left out (rotation and retry take an optional one). */
  optionalBody?: boolean;
}

/** Every route of src/modules/*, with generators for its path, query and body. */
export function routeSpecs(f: Fixture): RouteSpec[] {
  const c = (s: string) => fc.constant(s);
  const mid = uuidish([...f.a.messageIds, ...f.b.messageIds]);
  const tid = uuidish([f.victimId]);
  // DELETE of a real tenant would end the fuzzing of the admin routes: random ids only.
  const unknownTid = uuidish([crypto.randomUUID()]);
  const cid = fc.oneof(
    fc.constantFrom(...f.a.conversations, ...f.b.conversations),
    fc.uuid(),
    hostileString.map(encode),
    fc.constant('a'.repeat(129)),
  );
  const msgQuery = queryString(f, [
    'conversation_id',
    'limit',
    'cursor',
    'order',
    'include_archived',
  ]);
  const convQuery = queryString(f, ['limit', 'cursor', 'order', 'include_archived']);
  const r = (
    method: string,
    label: string,
    realm: RouteSpec['realm'],
    path: fc.Arbitrary<string>,
    extra: Partial<RouteSpec> = {},
  ): RouteSpec => ({ method, label, realm, path, ...extra });
  return [
    r('GET', '/livez', 'probe', c('/livez')),
    r('GET', '/readyz', 'probe', c('/readyz')),
    r('GET', '/metrics', 'probe', c('/metrics')),
    r('GET', '/openapi.json', 'probe', c('/openapi.json')),
    r('GET', '/docs', 'probe', c('/docs')),
    r('GET', '/v1/admin/health', 'admin', c('/v1/admin/health')),
    r('POST', '/v1/admin/embeddings/retry', 'admin', c('/v1/admin/embeddings/retry'), {
      body: 'retry',
      optionalBody: true,
    }),
    r('POST', '/v1/admin/embeddings/reindex', 'admin', c('/v1/admin/embeddings/reindex')),
    r('POST', '/v1/admin/retention/run', 'admin', c('/v1/admin/retention/run')),
    r('POST', '/v1/admin/tenants', 'admin', c('/v1/admin/tenants'), { body: 'createTenant' }),
    r(
      'GET',
      '/v1/admin/tenants',
      'admin',
      queryString(f, ['limit', 'cursor']).map((q) => `/v1/admin/tenants${q}`),
    ),
    r(
      'GET',
      '/v1/admin/tenants/:id',
      'admin',
      tid.map((id) => `/v1/admin/tenants/${id}`),
    ),
    r(
      'PATCH',
      '/v1/admin/tenants/:id',
      'admin',
      tid.map((id) => `/v1/admin/tenants/${id}`),
      {
        body: 'patchTenant',
      },
    ),
    r(
      'POST',
      '/v1/admin/tenants/:id/keys',
      'admin',
      tid.map((id) => `/v1/admin/tenants/${id}/keys`),
      {
        body: 'rotate',
        optionalBody: true,
      },
    ),
    r(
      'GET',
      '/v1/admin/tenants/:id/export',
      'admin',
      tid.map((id) => `/v1/admin/tenants/${id}/export`),
    ),
    r(
      'DELETE',
      '/v1/admin/tenants/:id',
      'admin',
      unknownTid.map((id) => `/v1/admin/tenants/${id}`),
    ),
    r('POST', '/v1/messages', 'tenant', c('/v1/messages'), { body: 'message' }),
    r('POST', '/v1/messages/batch', 'tenant', c('/v1/messages/batch'), { body: 'batch' }),
    r(
      'GET',
      '/v1/messages',
      'tenant',
      msgQuery.map((q) => `/v1/messages${q}`),
    ),
    r(
      'GET',
      '/v1/messages/:id',
      'tenant',
      mid.map((id) => `/v1/messages/${id}`),
    ),
    r(
      'DELETE',
      '/v1/messages/:id',
      'tenant',
      mid.map((id) => `/v1/messages/${id}`),
    ),
    r(
      'GET',
      '/v1/conversations',
      'tenant',
      convQuery.map((q) => `/v1/conversations${q}`),
    ),
    r(
      'GET',
      '/v1/conversations/:id',
      'tenant',
      fc
        .tuple(cid, queryString(f, ['include_archived']))
        .map(([id, q]) => `/v1/conversations/${id}${q}`),
    ),
    r(
      'DELETE',
      '/v1/conversations/:id',
      'tenant',
      cid.map((id) => `/v1/conversations/${id}`),
    ),
    r(
      'POST',
      '/v1/conversations/:id/archive',
      'tenant',
      cid.map((id) => `/v1/conversations/${id}/archive`),
    ),
    r(
      'POST',
      '/v1/conversations/:id/unarchive',
      'tenant',
      cid.map((id) => `/v1/conversations/${id}/unarchive`),
    ),
    r('POST', '/v1/search', 'tenant', c('/v1/search'), { body: 'search' }),
  ];
}

/** A request to one of the routes, with any key, headers and body the generators make. */
export function routeRequest(f: Fixture, spec: RouteSpec): fc.Arbitrary<FuzzRequest> {
  const all = bodies(f);
  const body = spec.body
    ? wire(f, all[spec.body])
    : spec.method === 'GET'
      ? fc.constant({ raw: undefined, contentType: undefined })
      : fc.oneof(fc.constant({ raw: undefined, contentType: undefined }), wire(f, anyJson));
  return fc
    .tuple(spec.path, auth(f, spec.realm), extraHeaders, body)
    .map(([path, a, headers, b]) => {
      const h: Record<string, string> = { ...headers };
      if (b.contentType !== undefined) h['content-type'] = b.contentType;
      if (a.header !== undefined) h.authorization = a.header;
      return printable({ method: spec.method, path, auth: a, headers: h, raw: b.raw });
    });
}

/** Longest string a failure report shows in full; longer ones are cut, with their length. */
const REPORT_MAX_CHARS = 300;

/** Makes fast-check report a failing request readably (bodies and headers can be 60 KB). */
export function printable(req: FuzzRequest): FuzzRequest {
  const cut = (_k: string, v: unknown) => {
    if (v instanceof Uint8Array) return `<bytes ${Buffer.from(v).toString('hex')}>`;
    if (typeof v === 'string' && v.length > REPORT_MAX_CHARS) {
      return `${v.slice(0, REPORT_MAX_CHARS)}…<${v.length} chars>`;
    }
    return v;
  };
  return Object.assign(req, { [fc.toStringMethod]: () => JSON.stringify(req, cut) });
}

/** Requests to routes that do not exist, or with methods the routes do not take. */
export function strayRequest(f: Fixture): fc.Arbitrary<FuzzRequest> {
  const path = fc.oneof(
    fc.constantFrom(
      '/',
      '/v1',
      '/v1/',
      '/v2/messages',
      '/V1/messages',
      '//v1/messages',
      '/v1//messages',
      '/v1/admin',
      '/v1/admin/tenants/x/y/z',
      '/v1/messages/batch/x',
      '/v1/conversations/a/b/c',
      '/v1/search/x',
      '/.env',
      '/%2e%2e/%2e%2e/etc/passwd',
      '/v1/messages%00',
      '/livez/x',
    ),
    fc.webPath().map((p) => `/v1${p}`),
    hostileString.map((s) => `/${encode(s)}`),
  );
  return fc
    .tuple(
      fc.constantFrom(
        'PUT',
        'TRACE',
        'PROPFIND',
        'MKCOL',
        'LINK',
        'PATCH',
        'DELETE',
        'POST',
        'GET',
        'HEAD',
        'OPTIONS',
      ),
      path,
      auth(f, 'tenant'),
      extraHeaders,
    )
    .map(([method, p, a, headers]) =>
      printable({
        method,
        path: p,
        auth: a,
        headers: a.header === undefined ? headers : { ...headers, authorization: a.header },
        raw: method === 'GET' || method === 'HEAD' ? undefined : '{}',
      }),
    );
}
