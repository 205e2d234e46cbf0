/**
 * The registered path a request's path names, as Elysia's router reads it (its default
 * `strictPath: false`): the URL up to the query, fragment included, and every route answers at
 * its path and with one trailing slash added or removed, so `/mcp/` is `/mcp`. Nothing else is
 * folded: `//mcp`, `/mcp//`, `/%6Dcp` and `/mcp#x` match no route (the URL parser has already
 * resolved `.`, `..` and backslashes). For a parameterised route the parameters stay as sent.
 * Anything keyed on "which route is this" keys on this, never on the raw path; the rate limiter
 * checks its reading against the route Elysia matched.
 */
export function routePathOf(url: string): string {
  const start = url.indexOf('/', url.indexOf('://') + 3);
  if (start < 0) return '/';
  const query = url.indexOf('?', start);
  const path = query < 0 ? url.slice(start) : url.slice(start, query);
  return path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
}
