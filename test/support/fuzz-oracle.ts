// The oracle of test/fuzz.test.ts: what every answer to a generated request must satisfy.
import { expect } from 'bun:test';
import type { FuzzRequest, FuzzResponse } from './fuzz';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SAFE_REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** Each documented error code and the statuses it may come with. */
const ERROR_STATUSES: Record<string, number[]> = {
  malformed_json: [400],
  invalid_cursor: [400],
  unauthorized: [401],
  forbidden: [403],
  not_found: [404],
  conflict: [409],
  idempotency_conflict: [409],
  payload_too_large: [413],
  unsupported_media_type: [415],
  validation_failed: [422],
  semantic_search_disabled: [422],
};

/** Refusals the body parser makes before authentication runs. */
function refusedByParser(res: FuzzResponse): boolean {
  const code = res.json?.error?.code;
  if (['malformed_json', 'payload_too_large', 'unsupported_media_type'].includes(code)) return true;
  return code === 'validation_failed' && /NUL|well-formed|nesting/.test(res.json.error.message);
}

interface MatchedRoute {
  name: string;
  realm: 'tenant' | 'admin' | 'probe';
  param?: string;
}

const ROUTE_PATTERNS: [string, RegExp, string, MatchedRoute['realm']][] = [
  ['GET', /^\/livez$/, 'livez', 'probe'],
  ['GET', /^\/readyz$/, 'readyz', 'probe'],
  ['GET', /^\/metrics$/, 'metrics', 'probe'],
  ['GET', /^\/openapi\.json$/, 'openapi', 'probe'],
  ['GET', /^\/docs$/, 'docs', 'probe'],
  ['GET', /^\/v1\/admin\/health$/, 'health', 'admin'],
  ['POST', /^\/v1\/admin\/embeddings\/(retry|reindex)$/, 'embeddings', 'admin'],
  ['POST', /^\/v1\/admin\/retention\/run$/, 'retention', 'admin'],
  ['POST', /^\/v1\/admin\/tenants$/, 'createTenant', 'admin'],
  ['GET', /^\/v1\/admin\/tenants$/, 'listTenants', 'admin'],
  ['GET', /^\/v1\/admin\/tenants\/([^/]+)$/, 'getTenant', 'admin'],
  ['PATCH', /^\/v1\/admin\/tenants\/([^/]+)$/, 'patchTenant', 'admin'],
  ['DELETE', /^\/v1\/admin\/tenants\/([^/]+)$/, 'deleteTenant', 'admin'],
  ['POST', /^\/v1\/admin\/tenants\/([^/]+)\/keys$/, 'rotate', 'admin'],
  ['GET', /^\/v1\/admin\/tenants\/([^/]+)\/export$/, 'export', 'admin'],
  ['POST', /^\/v1\/messages$/, 'createMessage', 'tenant'],
  ['POST', /^\/v1\/messages\/batch$/, 'createBatch', 'tenant'],
  ['GET', /^\/v1\/messages$/, 'listMessages', 'tenant'],
  ['GET', /^\/v1\/messages\/([^/]+)$/, 'getMessage', 'tenant'],
  ['DELETE', /^\/v1\/messages\/([^/]+)$/, 'deleteMessage', 'tenant'],
  ['GET', /^\/v1\/conversations$/, 'listConversations', 'tenant'],
  ['GET', /^\/v1\/conversations\/([^/]+)$/, 'getConversation', 'tenant'],
  ['DELETE', /^\/v1\/conversations\/([^/]+)$/, 'deleteConversation', 'tenant'],
  ['POST', /^\/v1\/conversations\/([^/]+)\/(archive|unarchive)$/, 'archive', 'tenant'],
  ['POST', /^\/v1\/search$/, 'search', 'tenant'],
];

/** The route a request reaches, judged from the URL as the server will see it. */
export function matchRoute(method: string, path: string): MatchedRoute | null {
  let pathname = new URL(`http://localhost${path}`).pathname;
  if (pathname.length > 1 && pathname.endsWith('/')) pathname = pathname.slice(0, -1);
  const m = method === 'HEAD' ? 'GET' : method;
  for (const [routeMethod, pattern, name, realm] of ROUTE_PATTERNS) {
    const match = routeMethod === m ? pattern.exec(pathname) : null;
    if (match) return { name, realm, param: match[1] };
  }
  return null;
}

function decoded(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function expectMessage(m: any) {
  expect(Object.keys(m).sort()).toEqual([
    'archived',
    'archived_at',
    'content',
    'conversation_id',
    'created_at',
    'embedding_error',
    'embedding_status',
    'id',
    'metadata',
    'name',
    'role',
    'tool_call_id',
    'tool_calls',
  ]);
  expect(m.id).toMatch(UUID);
  expect(m.conversation_id).toMatch(/^[A-Za-z0-9._:-]{1,128}$/);
  expect(['user', 'assistant', 'system', 'tool']).toContain(m.role);
  expect(m.content).toBeString();
  expect(m.created_at).toMatch(ISO);
  expect(typeof m.metadata === 'object' && m.metadata !== null && !Array.isArray(m.metadata)).toBe(
    true,
  );
}

/** What a 2xx answer of each route must look like. */
function expectSuccessShape(req: FuzzRequest, route: MatchedRoute, res: FuzzResponse) {
  if (req.method === 'HEAD') return;
  const j = res.json;
  const param = route.param === undefined ? undefined : decoded(route.param);
  switch (route.name) {
    case 'livez':
      return expect(j).toEqual({ status: 'ok' });
    case 'readyz':
      return expect(j).toEqual({ status: 'ready' });
    case 'metrics':
      return expect(res.text).toContain('threadstore_http_requests_total');
    case 'openapi':
      return expect(Object.keys(j.paths)).toContain('/v1/messages');
    case 'docs':
      return expect(res.text).toContain('<html');
    case 'health':
      return expect(['pass', 'warn']).toContain(j.status);
    case 'retention':
      return expect(j).toMatchObject({
        complete: expect.any(Boolean),
        skipped: expect.any(Boolean),
      });
    case 'createTenant':
      expect(res.status).toBe(201);
      expect(j.id).toMatch(UUID);
      return expect(j.api_key).toMatch(/^ts_[A-Za-z0-9_-]{43}$/);
    case 'listTenants':
      expect(j.tenants).toBeArray();
      return expect(j.next_cursor === null || typeof j.next_cursor === 'string').toBe(true);
    case 'getTenant':
    case 'patchTenant':
      // An id in capitals names the same tenant.
      return expect(j.id).toBe(param?.toLowerCase());
    case 'rotate':
      expect(res.status).toBe(201);
      return expect(j.api_key).toMatch(/^ts_/);
    case 'export': {
      expect(res.headers.get('content-type')).toContain('application/x-ndjson');
      const lines = res.text
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l));
      expect(lines[0]).toMatchObject({ type: 'tenant', id: param?.toLowerCase() });
      return expect(lines.at(-1)).toMatchObject({ type: 'end' });
    }
    case 'createMessage':
      expect(res.status).toBe(201);
      return expectMessage(j);
    case 'createBatch':
      expect(res.status).toBe(201);
      expect(j.messages.length).toBeGreaterThan(0);
      return j.messages.forEach(expectMessage);
    case 'listMessages':
      j.messages.forEach(expectMessage);
      return expect(j.next_cursor === null || typeof j.next_cursor === 'string').toBe(true);
    case 'getMessage':
      expectMessage(j);
      return expect(j.id).toBe(param?.toLowerCase());
    case 'deleteMessage':
    case 'deleteConversation':
      expect(res.status).toBe(204);
      return expect(res.text).toBe('');
    case 'listConversations':
      expect(j.conversations).toBeArray();
      return expect(j.next_cursor === null || typeof j.next_cursor === 'string').toBe(true);
    case 'getConversation':
      expect(j.id).toBe(param);
      return expect(j.message_count).toBeNumber();
    case 'archive':
      return expect(Object.values(j)).toEqual([expect.any(Number)]);
    case 'search':
      expect(j.mode).toBe('fulltext');
      return j.results.forEach((r: any) => expectMessage(r.message));
    default:
      throw new Error(`no 2xx expected from ${route.name}`);
  }
}

/**
 * Every answer: never a 5xx; a success only for a known route with the right key, in the
 * route's shape; every refusal in the one error body with the request id of the header; and
 * no secret (keys, the bystander's content and ids) in any of them.
 */
export function checkResponse(
  req: FuzzRequest,
  res: FuzzResponse,
  secrets: string[],
): MatchedRoute | null {
  expect(res.status).toBeLessThan(500);
  const requestId = res.headers.get('x-request-id');
  // Header values reach the server with surrounding whitespace trimmed (Fetch spec).
  const given = req.headers['x-request-id']?.trim();
  if (given !== undefined && SAFE_REQUEST_ID.test(given)) expect(requestId).toBe(given);
  else expect(requestId).toMatch(UUID);
  for (const secret of secrets) expect(res.text).not.toContain(secret);

  const route = matchRoute(req.method, req.path);
  const realm = route?.realm;
  const authorised =
    realm === 'probe' ||
    (realm === 'tenant' && req.auth.as === 'tenant') ||
    (realm === 'admin' && req.auth.as === 'admin');

  if (res.status < 400) {
    expect(route).not.toBeNull();
    expect(authorised).toBe(true);
    expectSuccessShape(req, route!, res);
    return route;
  }

  if (req.method !== 'HEAD') {
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(Object.keys(res.json)).toEqual(['error']);
    const e = res.json.error;
    for (const k of Object.keys(e))
      expect(['code', 'message', 'request_id', 'details']).toContain(k);
    expect(ERROR_STATUSES[e.code]).toContain(res.status);
    expect(e.message).toBeString();
    expect(e.message.length).toBeGreaterThan(0);
    expect(e.request_id).toBe(requestId);
  }
  if (res.status === 401) expect(res.headers.get('www-authenticate')).toBe('Bearer');
  // No route, no key check, no body parsing: just 404.
  if (!route) expect(res.status).toBe(404);
  if (route && !authorised && !refusedByParser(res)) {
    // A wrong key is refused before anything about the request is looked at.
    const expected = req.auth.as === 'disabled' && realm === 'tenant' ? 403 : 401;
    expect(res.status).toBe(expected);
  }
  // The right key is never what gets a request refused.
  if (route && authorised) expect([401, 403]).not.toContain(res.status);
  return route;
}
