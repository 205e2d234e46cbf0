/**
 * The path of a request's absolute URL as the router matches it: everything from the first
 * slash after the host up to the query or fragment, undecoded and unnormalised. Parsing a
 * `URL` for this cost more than the rest of the rate limiter's work per request.
 */
export function pathOf(url: string): string {
  const start = url.indexOf('/', url.indexOf('://') + 3);
  if (start < 0) return '/';
  let end = url.length;
  const query = url.indexOf('?', start);
  if (query >= 0) end = query;
  const fragment = url.indexOf('#', start);
  if (fragment >= 0 && fragment < end) end = fragment;
  return url.slice(start, end);
}
