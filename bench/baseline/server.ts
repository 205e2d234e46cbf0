// The ceiling threadstore is measured against: the least a server can do and still honour the
// create and list contract. Plain Bun.serve and postgres.js, a bearer key checked against an
// in-memory map, one INSERT … RETURNING per create, one keyset SELECT of a page per list; no
// framework, validation library, logging, metrics, limits or idempotency. Its answers carry
// every field of the API's message (the embedding status comes from the message's search row),
// so the ratio measures what threadstore does per request, not a smaller response.
// Env: DATABASE_URL, PORT, DB_POOL_MAX, BASELINE_KEYS="key:tenant_id,key:tenant_id",
// EMBEDDING_STATUS (what a new message's search row starts as: pending or disabled).
import postgres from 'postgres';

const env = process.env;
const sql = postgres(env.DATABASE_URL!, { max: Number(env.DB_POOL_MAX ?? 20) });
const tenants = new Map(
  (env.BASELINE_KEYS ?? '')
    .split(',')
    .filter(Boolean)
    .map((pair) => pair.split(':') as [string, string]),
);
const ROLES = new Set(['user', 'assistant', 'system', 'tool']);
const PAGE_MAX = 100;
const EMBEDDING_STATUS = env.EMBEDDING_STATUS ?? 'disabled';

const json = (body: unknown, status = 200) => Response.json(body, { status });
const fail = (status: number, code: string) => json({ error: { code } }, status);

interface Row {
  id: string;
  conversation_id: string;
  role: string;
  content: string;
  name: string | null;
  tool_call_id: string | null;
  tool_calls: unknown;
  metadata: unknown;
  created_at: Date;
  archived: boolean;
  archived_at: Date | null;
  embedding_status?: string | null;
  embedding_error?: string | null;
}

const view = (r: Row) => ({
  id: r.id,
  conversation_id: r.conversation_id,
  role: r.role,
  content: r.content,
  name: r.name,
  tool_call_id: r.tool_call_id,
  tool_calls: r.tool_calls,
  metadata: r.metadata,
  created_at: r.created_at.toISOString(),
  archived: r.archived,
  archived_at: r.archived_at?.toISOString() ?? null,
  embedding_status: r.embedding_status ?? 'disabled',
  embedding_error: r.embedding_error ?? null,
});

async function create(tenant: string, req: Request): Promise<Response> {
  let body: { conversation_id?: unknown; role?: unknown; content?: unknown; metadata?: unknown };
  try {
    body = (await req.json()) as typeof body;
  } catch {
    return fail(400, 'invalid_json');
  }
  const { conversation_id, role, content } = body;
  if (typeof conversation_id !== 'string' || typeof content !== 'string') {
    return fail(422, 'validation_failed');
  }
  if (typeof role !== 'string' || !ROLES.has(role)) return fail(422, 'validation_failed');
  const metadata = body.metadata ?? {};
  // The conversation exists (the bench creates it first); its foreign key is still checked.
  const [row] = await sql<Row[]>`
    insert into messages (id, tenant_id, conversation_id, role, content, metadata)
    values (${Bun.randomUUIDv7()}, ${tenant}, ${conversation_id}, ${role}, ${content},
      ${sql.json(metadata as postgres.JSONValue)})
    returning id, conversation_id, role, content, name, tool_call_id, tool_calls, metadata,
      created_at, archived, archived_at`;
  // The search row's status is what the index trigger set; a new message has no error.
  return json(view({ ...row!, embedding_status: EMBEDDING_STATUS }), 201);
}

async function list(tenant: string, url: URL): Promise<Response> {
  const conversation = url.searchParams.get('conversation_id');
  if (!conversation) return fail(422, 'validation_failed');
  const limit = Math.min(Number(url.searchParams.get('limit') ?? 50) || 50, PAGE_MAX);
  const cursor = url.searchParams.get('cursor');
  const [at, id] = cursor ? Buffer.from(cursor, 'base64url').toString().split('|') : [];
  const rows = await sql<Row[]>`
    select m.id, m.conversation_id, m.role, m.content, m.name, m.tool_call_id, m.tool_calls,
      m.metadata, m.created_at, m.archived, m.archived_at, s.embedding_status, s.embedding_error
    from messages m left join message_search s on s.message_id = m.id
    where m.tenant_id = ${tenant} and m.conversation_id = ${conversation} and not m.archived
      ${at && id ? sql`and (m.created_at, m.id) > (${at}::timestamptz, ${id}::uuid)` : sql``}
    order by m.created_at, m.id limit ${limit + 1}`;
  const more = rows.length > limit;
  const page = more ? rows.slice(0, limit) : rows;
  const last = page.at(-1);
  return json({
    messages: page.map(view),
    next_cursor:
      more && last
        ? Buffer.from(`${last.created_at.toISOString()}|${last.id}`).toString('base64url')
        : null,
  });
}

Bun.serve({
  hostname: '127.0.0.1',
  port: Number(env.PORT ?? 3001),
  async fetch(req) {
    const url = new URL(req.url);
    if (url.pathname === '/livez') return new Response('ok');
    if (url.pathname !== '/v1/messages') return fail(404, 'not_found');
    const auth = req.headers.get('authorization');
    const tenant = auth?.startsWith('Bearer ') ? tenants.get(auth.slice(7)) : undefined;
    if (!tenant) return fail(401, 'unauthorized');
    if (req.method === 'POST') return create(tenant, req);
    if (req.method === 'GET') return list(tenant, url);
    return fail(405, 'method_not_allowed');
  },
});

// A clean exit on SIGTERM, so `bun --cpu-prof` can write its profile.
process.on('SIGTERM', () => process.exit(0));
