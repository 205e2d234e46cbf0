import { timingSafeEqual } from 'node:crypto';

/** `bytes` random bytes as base64url. */
export function randomToken(bytes: number): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString('base64url');
}

/** Tenant keys carry a recognisable prefix so that leaked keys are easy to spot and scan for. */
export const TENANT_KEY_PREFIX = 'ts_';
const KEY_BYTES = 32;
/** What generateTenantKey makes: the prefix, then KEY_BYTES in unpadded base64url. */
const TENANT_KEY_SHAPE = new RegExp(
  `^${TENANT_KEY_PREFIX}[A-Za-z0-9_-]{${Math.ceil((KEY_BYTES * 8) / 6)}}$`,
);
/** Characters of the key kept in clear for display ("ts_AbCdEf…"); not enough to guess the rest. */
const DISPLAY_PREFIX_CHARS = TENANT_KEY_PREFIX.length + 6;

export interface NewKey {
  key: string;
  hash: string;
  prefix: string;
}

export function generateTenantKey(): NewKey {
  const key = TENANT_KEY_PREFIX + randomToken(KEY_BYTES);
  return { key, hash: hashKey(key), prefix: key.slice(0, DISPLAY_PREFIX_CHARS) };
}

/**
 * Whether a token could be a tenant key at all. Anything else is refused without a database
 * lookup, so that guessing with malformed tokens costs the database nothing.
 */
export function isTenantKeyShaped(token: string): boolean {
  return TENANT_KEY_SHAPE.test(token);
}

/** SHA-256 hex: keys have 256 bits of entropy, so a fast hash is enough and lookup stays O(1). */
export function hashKey(key: string): string {
  return Bun.SHA256.hash(key, 'hex');
}

/** Compares two secrets in time independent of where they differ (and of their lengths). */
export function safeEqual(a: string, b: string): boolean {
  // Hashes first, so that both sides have one length; the one-shot hash allocates no hasher.
  return timingSafeEqual(Bun.SHA256.hash(a), Bun.SHA256.hash(b));
}

/** The token of an `Authorization: Bearer <token>` header, or null. */
export function bearerToken(header: string | null | undefined): string | null {
  if (!header) return null;
  const match = /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
  return match?.[1] ?? null;
}
