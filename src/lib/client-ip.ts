/** How far X-Forwarded-For is believed, from TRUST_PROXY. */
export type ProxyTrust =
  { kind: 'none' } | { kind: 'hops'; hops: number } | { kind: 'list'; proxies: Set<string> };

/**
 * Parses TRUST_PROXY: `false`/empty (trust no header), a number of proxy hops (`true` is one),
 * or a comma-separated list of proxy addresses.
 */
export function parseTrustProxy(value: string): ProxyTrust {
  const v = value.trim();
  if (v === '' || v === 'false' || v === '0') return { kind: 'none' };
  if (v === 'true') return { kind: 'hops', hops: 1 };
  if (/^\d+$/.test(v)) return { kind: 'hops', hops: Number(v) };
  return { kind: 'list', proxies: new Set(v.split(',').map(normalise).filter(Boolean)) };
}

/** IPv4-mapped IPv6 (::ffff:1.2.3.4) and plain IPv4 name the same client. */
function normalise(ip: string): string {
  const s = ip.trim().toLowerCase();
  return s.startsWith('::ffff:') && s.includes('.') ? s.slice(7) : s;
}

/**
 * The client address: the socket address unless proxies are trusted, in which case the
 * X-Forwarded-For chain is read from the right, past the trusted proxies only. A spoofed
 * header therefore never changes the key of a client that connects directly.
 */
export function clientIp(
  socketIp: string | undefined,
  forwardedFor: string | null,
  trust: ProxyTrust,
): string {
  const socket = socketIp ? normalise(socketIp) : 'unknown';
  if (trust.kind === 'none' || !forwardedFor) return socket;
  const chain = [...forwardedFor.split(',').map(normalise).filter(Boolean), socket];
  if (trust.kind === 'hops') {
    return chain[Math.max(chain.length - 1 - trust.hops, 0)]!;
  }
  let i = chain.length - 1;
  while (i > 0 && trust.proxies.has(chain[i]!)) i--;
  return chain[i]!;
}
