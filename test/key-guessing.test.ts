import { afterAll, describe, expect, test } from 'bun:test';
import postgres from 'postgres';
import { generateTenantKey, isTenantKeyShaped } from '../src/auth/keys';
import { UNKNOWN_KEY_TTL_MS } from '../src/auth/resolver';
import { buildTestApp } from './support/app';

// Guessed keys must cost the database nothing. A second session locks api_keys, so any request
// that looks a key up waits behind the lock: whatever is answered at once was answered without
// a lookup.
const blocker = postgres(process.env.TEST_DATABASE_URL!, { max: 1, onnotice: () => {} });
const READ_BUDGET = 3;
const t = await buildTestApp({
  RATE_LIMIT_READ_PER_MINUTE: String(READ_BUDGET),
  // Lookups stuck behind the lock give up long after the lock is released.
  REQUEST_TIMEOUT_MS: '10000',
});
afterAll(async () => {
  await t.close();
  await blocker.end();
});

/** An answer "at once": far below what a lookup waiting for the lock takes. */
const AT_ONCE_MS = 1000;
/** How long the lock is held at most; a request still waiting then took too long anyway. */
const HOLD_MS = 2500;

/** A key of the right shape (ts_ + 43 base64url characters) that no tenant has. */
const wellFormedUnknown = () =>
  `ts_${Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('base64url')}`;

const MALFORMED = [
  'ts_short',
  'ts_',
  `ts_${'A'.repeat(42)}`,
  `ts_${'A'.repeat(44)}`,
  `ts_${'A'.repeat(42)}+`,
  `ts_${'A'.repeat(42)}=`,
  `TS_${'A'.repeat(43)}`,
  `xx_${'A'.repeat(43)}`,
  `tsadmin_${'A'.repeat(43)}`,
  'A'.repeat(46),
  'k'.repeat(4000),
  `ts_${'A'.repeat(43)}ts_`,
];

/** Sends a request and times it; GET /v1/messages is a read, so the read budget pays. */
async function timed(key: string, ip: string) {
  const started = performance.now();
  const res = await t.call('GET', '/v1/messages?limit=1', { key, ip });
  return { status: res.status, code: res.json?.error?.code, ms: performance.now() - started };
}

/** Runs `fn` while another session holds ACCESS EXCLUSIVE on api_keys (at most HOLD_MS). */
async function withKeysLocked<T>(fn: () => Promise<T>): Promise<T> {
  const session = await blocker.reserve();
  await session`begin`;
  await session`lock table api_keys in access exclusive mode`;
  const work = fn();
  await Promise.race([work.catch(() => {}), Bun.sleep(HOLD_MS)]);
  await session`rollback`;
  session.release();
  return work;
}

describe('guessed keys never reach the database', () => {
  test('every key threadstore makes has the shape; the malformed ones here do not', () => {
    for (let i = 0; i < 2000; i++) expect(isTenantKeyShaped(generateTenantKey().key)).toBe(true);
    for (const key of MALFORMED) expect(isTenantKeyShaped(key)).toBe(false);
  });

  test('malformed keys, a known-unknown key and a client over its budget are answered at once while api_keys is locked', async () => {
    const { api_key } = await t.tenant();
    // Before the lock: an unknown key of the right shape is tried once (a lookup, found unknown).
    const unknown = wellFormedUnknown();
    expect((await timed(unknown, '10.55.0.1')).status).toBe(401);
    // A client that has spent its budget on guesses.
    for (let i = 0; i < READ_BUDGET; i++) {
      expect((await timed(`ts_guess${i}`, '10.55.0.2')).status).toBe(401);
    }
    // The tenant's own key is cached by now (it is looked up once here).
    expect((await t.call('GET', '/v1/messages?limit=1', { key: api_key })).status).toBe(200);

    const results = await withKeysLocked(() =>
      Promise.all([
        // One address per malformed key, so each is within budget and gets its 401.
        ...MALFORMED.map((key, i) => timed(key, `10.56.0.${i + 1}`)),
        timed(unknown, '10.55.0.3'),
        // Never seen before, but its client is over budget: 429 before any lookup.
        timed(wellFormedUnknown(), '10.55.0.2'),
      ]),
    );
    const slow = results.filter((r) => r.ms > AT_ONCE_MS);
    process.stderr.write(
      `locked api_keys: ${slow.length} of ${results.length} requests waited > ${AT_ONCE_MS} ms ` +
        `(${results.map((r) => Math.round(r.ms)).join(', ')} ms)\n`,
    );
    expect(results.map((r) => r.status)).toEqual([...MALFORMED.map(() => 401), 401, 429]);
    expect(results.at(-1)!.code).toBe('rate_limited');
    expect(slow).toEqual([]);
  });

  test('a key found unknown is looked up again after a short while, so a key that appears later works', async () => {
    const { id } = await t.tenant();
    const key = wellFormedUnknown();
    expect((await timed(key, '10.57.0.1')).status).toBe(401);
    // The key now exists (as a restore from a backup would make it), behind the cache's back.
    await blocker`insert into api_keys (id, tenant_id, key_hash, key_prefix)
      values (${Bun.randomUUIDv7()}, ${id}, ${Bun.SHA256.hash(key, 'hex')}, ${key.slice(0, 9)})`;
    const started = performance.now();
    let status = 401;
    // Each try from an address of its own: 401s spend the address's read budget.
    for (let i = 2; status === 401 && performance.now() - started < 10_000; i++) {
      await Bun.sleep(100);
      status = (await timed(key, `10.57.${i >> 8}.${i & 255}`)).status;
    }
    expect(status).toBe(200);
    // Bounded by the memory of unknown keys (2 s), give or take one poll and a busy machine.
    expect(performance.now() - started).toBeLessThan(UNKNOWN_KEY_TTL_MS + 1000);
  });
});
