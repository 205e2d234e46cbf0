import { cors as elysiaCors } from '@elysiajs/cors';
import { Elysia } from 'elysia';

/** Request headers a browser may send cross-origin (MCP clients add their protocol version). */
const ALLOWED_HEADERS = [
  'Authorization',
  'Content-Type',
  'X-Request-Id',
  'Idempotency-Key',
  'Mcp-Protocol-Version',
];
/** Response headers a browser script may read: ids, rate-limit state, retry hints. */
const EXPOSED_HEADERS = [
  'X-Request-Id',
  'RateLimit-Limit',
  'RateLimit-Remaining',
  'RateLimit-Reset',
  'Retry-After',
  'Idempotent-Replayed',
];
const METHODS = ['GET', 'POST', 'PATCH', 'DELETE', 'OPTIONS'];

/**
 * CORS for an explicit list of exact origins (CORS_ORIGINS). The plugin's defaults echo any
 * origin with credentials, so every option is set here: origins are matched exactly (a
 * function, because the plugin's string matching also compares host names without the scheme),
 * headers and methods are listed rather than echoed. With no origins there is no CORS at all:
 * browsers get no Access-Control-Allow-Origin and cross-origin reads fail.
 */
export function cors(origins: string[], maxAgeSeconds: number) {
  if (origins.length === 0) return new Elysia({ name: 'cors-off' });
  const allowed = new Set(origins);
  return elysiaCors({
    origin: (request: Request) => allowed.has(request.headers.get('origin') ?? ''),
    methods: METHODS,
    allowedHeaders: ALLOWED_HEADERS,
    exposeHeaders: EXPOSED_HEADERS,
    // Only ever sent beside the Access-Control-Allow-Origin of a listed origin, never '*'.
    credentials: true,
    maxAge: maxAgeSeconds,
  });
}

/** CORS_ORIGINS as a list: comma-separated, blanks ignored. */
export function parseOrigins(value: string): string[] {
  return value
    .split(',')
    .map((o) => o.trim())
    .filter(Boolean);
}
