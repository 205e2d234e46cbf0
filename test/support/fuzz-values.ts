// Generators of values at the edges of what PostgreSQL can hold, for the HTTP and MCP fuzzers:
// times at both ends of the representable range with extreme offsets, ids in every spelling a
// UUID parser takes, content at the size limit in multibyte scripts; and a marker planted in
// every content, query and metadata value, which no log line may ever contain. All drawn from
// fast-check, so FUZZ_SEED replays them.
import fc from 'fast-check';
import { ADMIN_KEY } from './app';
import { type Fixture, type FuzzRequest, printable } from './fuzz';

/** The string planted in content, queries and metadata; the same for a given seed. */
export function fuzzMarker(seed: number): string {
  return `fzmk${seed.toString(36)}q`;
}

/** Log lines (raw JSON) that hold the marker: each one is a finding. */
export function linesWithMarker(lines: readonly string[], marker: string): string[] {
  return lines.filter((l) => l.includes(marker));
}

const pad = (n: number, width: number) => String(n).padStart(width, '0');

/** RFC 3339 offsets, the extreme ones most: ±23:59 moves an instant across a year boundary. */
const offset = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('-23:59', '+23:59', 'Z', 'z', '+00:00', '-00:00') },
  fc.constantFrom('+00:01', '-00:01', '+14:00', '-12:00', '+24:00', '-24:00', '+23:60', '+99:99'),
  fc
    .tuple(
      fc.constantFrom('+', '-'),
      fc.integer({ min: 0, max: 23 }),
      fc.integer({ min: 0, max: 59 }),
    )
    .map(([sign, h, m]) => `${sign}${pad(h, 2)}:${pad(m, 2)}`),
);

/**
 * A time near either end of years 0001–9999 (and just outside), with valid and invalid fields,
 * fractions of any length and extreme offsets; or how JavaScript writes extreme instants.
 */
export const extremeTime: fc.Arbitrary<string> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record({
        year: fc.constantFrom(0, 1, 2, 1969, 1970, 9998, 9999),
        month: fc.constantFrom(1, 2, 12, 0, 13),
        day: fc.constantFrom(1, 28, 29, 30, 31, 0, 32),
        hour: fc.constantFrom(0, 1, 22, 23, 24),
        minute: fc.constantFrom(0, 1, 58, 59, 60),
        second: fc.constantFrom(0, 59, 60),
        fraction: fc.constantFrom('', '.0', '.999', '.9999999', `.${'9'.repeat(30)}`, '.'),
        separator: fc.constantFrom('T', 't', ' '),
        offset,
      })
      .map(
        (p) =>
          `${pad(p.year, 4)}-${pad(p.month, 2)}-${pad(p.day, 2)}${p.separator}` +
          `${pad(p.hour, 2)}:${pad(p.minute, 2)}:${pad(p.second, 2)}${p.fraction}${p.offset}`,
      ),
  },
  {
    weight: 5,
    // The first and last instants a request may name, moved by an offset either way.
    arbitrary: fc
      .tuple(
        fc.constantFrom(
          '9999-12-31T23:59:59',
          '9999-12-31T00:00:00',
          '0001-01-01T00:00:00',
          '0001-01-01T23:59:59',
        ),
        fc.constantFrom('', '.999', '.001'),
        offset,
      )
      .map(([t, frac, off]) => `${t}${frac}${off}`),
  },
  {
    weight: 1,
    // What Date.toISOString writes for instants PostgreSQL cannot take.
    arbitrary: fc
      .constantFrom(
        8.64e15,
        -8.64e15,
        Date.UTC(10000, 0, 1),
        Date.UTC(0, 0, 1) - 1,
        -62135596800001,
      )
      .map((ms) => new Date(ms).toISOString()),
  },
  { weight: 1, arbitrary: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()) },
);

/**
 * One id in the spellings UUID parsers take or nearly take: the canonical form in either case,
 * `urn:uuid:` (Elysia's format takes it, PostgreSQL does not), braces and missing hyphens
 * (PostgreSQL takes them), misplaced hyphens, surrounding space, an extra digit; percent-encoded
 * or not when it goes in a path.
 */
export function uuidSpelling(ids: readonly string[], inPath: boolean): fc.Arbitrary<string> {
  const base = fc.oneof(fc.constantFrom(...ids), fc.uuid({ version: [4, 7] }));
  const spelled = fc
    .tuple(
      base,
      fc.constantFrom(
        (s: string) => s.toUpperCase(),
        (s: string) => s.replace(/[a-f]/g, (c, i: number) => (i % 2 ? c.toUpperCase() : c)),
        (s: string) => `urn:uuid:${s}`,
        (s: string) => `URN:UUID:${s.toUpperCase()}`,
        (s: string) => `{${s}}`,
        (s: string) => s.replaceAll('-', ''),
        (s: string) =>
          `${s
            .replaceAll('-', '')
            .replace(/(.{4})/g, '$1-')
            .slice(0, -1)}`,
        (s: string) => ` ${s}`,
        (s: string) => `${s}\n`,
        (s: string) => `${s}0`,
        (s: string) => s.slice(0, -1),
        (s: string) => s.replace(/-/, '--'),
        (s: string) => s.replace(/[0-9a-f]$/, 'g'),
        (s: string) => `${s.slice(0, 14)}f${s.slice(15)}`,
      ),
    )
    .map(([id, spell]) => spell(id));
  if (!inPath) return spelled;
  return fc
    .tuple(spelled, fc.boolean())
    .map(([s, encoded]) => (encoded || /[\s{}]/.test(s) ? encodeURIComponent(s) : s));
}

/** Scripts whose characters take 2 to 4 bytes in UTF-8, and combining sequences. */
const SCRIPTS: { name: string; from: number; count: number }[] = [
  { name: 'cjk', from: 0x4e00, count: 20_000 },
  { name: 'cjk-ext-b', from: 0x20000, count: 40_000 },
  { name: 'hangul', from: 0xac00, count: 11_000 },
  { name: 'arabic', from: 0x0627, count: 20 },
  { name: 'devanagari', from: 0x0915, count: 30 },
  { name: 'emoji', from: 0x1f600, count: 70 },
  { name: 'cyrillic', from: 0x0430, count: 32 },
];

const contentCache = new Map<string, string>();

/**
 * A text of exactly `length` UTF-16 code units (what the content limit counts) in one script:
 * words of one or two distinct characters, the shape that makes the largest tsvector, with
 * the marker at the start. Never ends in half a surrogate pair.
 */
function scriptText(
  script: (typeof SCRIPTS)[number],
  wordChars: number,
  length: number,
  marker: string,
) {
  const key = `${script.name}:${wordChars}:${length}:${marker}`;
  const cached = contentCache.get(key);
  if (cached !== undefined) return cached;
  const parts: string[] = [marker];
  let size = marker.length;
  for (let i = 0; size < length; i++) {
    let word = ' ';
    for (let j = 0, k = i; j < wordChars; j++, k = Math.floor(k / script.count)) {
      word += String.fromCodePoint(script.from + (k % script.count));
    }
    parts.push(word);
    size += word.length;
  }
  let text = parts.join('').slice(0, length);
  if (/[\ud800-\udbff]$/.test(text)) text = `${text.slice(0, -1)}x`;
  contentCache.set(key, text);
  return text;
}

/** Content of exactly the limit, one under and one over, in multibyte scripts. */
export function limitContent(maxChars: number, marker: string): fc.Arbitrary<string> {
  return fc
    .tuple(
      fc.constantFrom(...SCRIPTS),
      fc.constantFrom(1, 2),
      fc.constantFrom(maxChars, maxChars - 1, maxChars + 1),
    )
    .map(([script, wordChars, length]) => scriptText(script, wordChars, length, marker));
}

/** `s` with the marker put in it (at the start, the end or in the middle); '' stays empty. */
export function planted(s: fc.Arbitrary<string>, marker: string): fc.Arbitrary<string> {
  return fc.tuple(s, fc.nat()).map(([text, n]) => {
    if (text === '') return text;
    const at = n % (text.length + 1);
    return text.slice(0, at) + marker + text.slice(at);
  });
}

/** A JSON value with the marker planted in every string and key, however deep. */
export function plantedJson(value: fc.Arbitrary<unknown>, marker: string): fc.Arbitrary<unknown> {
  const plant = (v: unknown): unknown => {
    if (typeof v === 'string') return `${marker}${v}`;
    if (Array.isArray(v)) return v.map(plant);
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [`${k}${marker}`, plant(x)]));
    }
    return v;
  };
  return value.map((v) => {
    const out = plant(v);
    // Metadata that held no string at all still carries the marker.
    return out !== null && typeof out === 'object' && !Array.isArray(out)
      ? { ...(out as object), [marker]: marker }
      : out;
  });
}

/**
 * Requests that are valid in every other respect (the right key, well-formed JSON, the other
 * fields fine) and carry one value at an edge: a time, an id spelling, content at the limit.
 * The general generators reach these too, but seldom with everything else right.
 */
export function edgeRequest(f: Fixture): fc.Arbitrary<FuzzRequest> {
  const tenant = { header: `Bearer ${f.a.key}`, as: 'tenant' as const };
  const admin = { header: `Bearer ${ADMIN_KEY}`, as: 'admin' as const };
  const json = (method: string, path: string, auth: FuzzRequest['auth'], body?: unknown) =>
    printable({
      method,
      path,
      auth,
      headers: {
        authorization: auth.header!,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      raw: body === undefined ? undefined : JSON.stringify(body),
    });
  const time = fc.option(extremeTime, { nil: undefined });
  const metadata = plantedJson(
    fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.string(), fc.integer()), {
      maxKeys: 2,
    }),
    f.marker,
  );
  const content = fc.oneof(
    planted(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }), f.marker),
    limitContent(f.maxContentChars, f.marker),
  );
  const message = fc.record(
    {
      conversation_id: fc.constantFrom(...f.a.conversations),
      role: fc.constant('user'),
      content,
      metadata,
      created_at: time,
    },
    { requiredKeys: ['conversation_id', 'role', 'content'] },
  );
  const search = fc.record(
    {
      query: planted(fc.constantFrom('hello', 'a message', '"a message" or x'), f.marker),
      mode: fc.constant('fulltext'),
      created_after: time,
      created_before: time,
      metadata,
    },
    { requiredKeys: ['query'] },
  );
  const messageId = uuidSpelling([...f.a.messageIds, ...f.b.messageIds], true);
  const tenantId = uuidSpelling([f.victimId], true);
  return fc.oneof(
    { weight: 4, arbitrary: search.map((b) => json('POST', '/v1/search', tenant, b)) },
    { weight: 3, arbitrary: message.map((b) => json('POST', '/v1/messages', tenant, b)) },
    {
      weight: 1,
      arbitrary: fc
        .array(message, { minLength: 1, maxLength: 3 })
        .map((messages) => json('POST', '/v1/messages/batch', tenant, { messages })),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom('GET', 'DELETE'), messageId)
        .map(([m, id]) => json(m, `/v1/messages/${id}`, tenant)),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(fc.constantFrom('', '/export'), tenantId)
        .map(([tail, id]) => json('GET', `/v1/admin/tenants/${id}${tail}`, admin)),
    },
    {
      weight: 1,
      arbitrary: tenantId.map((id) =>
        json('PATCH', `/v1/admin/tenants/${id}`, admin, { name: 'fuzz victim' }),
      ),
    },
    {
      weight: 1,
      arbitrary: uuidSpelling([f.victimId], false).map((id) =>
        json('POST', '/v1/admin/embeddings/retry', admin, { tenant_id: id }),
      ),
    },
  );
}

/**
 * MCP tool calls that are valid in every other respect and carry one value at an edge: a time
 * of search_messages or add_messages, an id spelling of get_message or delete_message, content
 * at the size limit. Planted with the marker like the HTTP ones.
 */
export function mcpEdgeCall(
  ids: readonly string[],
  maxContentChars: number,
  marker: string,
): fc.Arbitrary<{ name: string; arguments: Record<string, unknown> }> {
  const time = fc.option(extremeTime, { nil: undefined });
  const metadata = plantedJson(
    fc.dictionary(fc.string({ maxLength: 8 }), fc.string(), { maxKeys: 2 }),
    marker,
  );
  const message = fc.record(
    {
      role: fc.constantFrom('user', 'assistant'),
      content: fc.oneof(
        planted(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }), marker),
        limitContent(maxContentChars, marker),
      ),
      metadata,
      created_at: time,
    },
    { requiredKeys: ['role', 'content'] },
  );
  const call = (name: string) => (args: Record<string, unknown>) => ({ name, arguments: args });
  return fc.oneof(
    fc
      .record(
        {
          query: planted(fc.constantFrom('hello', 'a message'), marker),
          mode: fc.constant('fulltext'),
          created_after: time,
          created_before: time,
          metadata,
        },
        { requiredKeys: ['query'] },
      )
      .map(call('search_messages')),
    fc
      .record({
        conversation_id: fc.constant('mcp-edge'),
        messages: fc.array(message, { minLength: 1, maxLength: 2 }),
      })
      .map(call('add_messages')),
    fc
      .tuple(fc.constantFrom('get_message', 'delete_message'), uuidSpelling(ids, false))
      .map(([name, id]) => call(name)({ id })),
  );
}
