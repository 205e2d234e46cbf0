import { afterAll, describe, expect, test } from 'bun:test';
import { Value } from '@sinclair/typebox/value';
import { sql } from 'drizzle-orm';
import { rowsOf } from '../src/db/raw';
import { purgeExpiredIdempotencyKeys } from '../src/modules/messages/idempotency';
import { CreateHeaders } from '../src/modules/messages/model';
import { buildTestApp, sharedApp, type TestApp } from './support/app';

const t = await sharedApp();
/** The same database behind an app that forgets keys after one second. */
const short = await buildTestApp({ IDEMPOTENCY_TTL_SECONDS: '1' });
afterAll(() => short.close());

async function count(table: 'messages' | 'idempotency_keys', tenantId: string): Promise<number> {
  const rows = rowsOf<{ n: number }>(
    await t.db.execute(
      sql`select count(*)::int as n from ${sql.identifier(table)} where tenant_id = ${tenantId}`,
    ),
  );
  return rows[0]!.n;
}

const msg = (over: Record<string, unknown> = {}) => ({
  conversation_id: 'idem',
  role: 'user',
  content: 'hello',
  ...over,
});

/** POSTs `body` to `path` with an Idempotency-Key, through the app `on` (the shared one by default). */
function post(apiKey: string, key: string, body: unknown, path = '/v1/messages', on: TestApp = t) {
  return on.call('POST', path, { key: apiKey, body, headers: { 'idempotency-key': key } });
}

describe('a retry with the same key and body', () => {
  test('gets the first response byte for byte, marked as replayed, and stores nothing', async () => {
    const { api_key, id } = await t.tenant();
    const first = await post(
      api_key,
      'order-1',
      msg({ metadata: { b: 1, a: [1, { y: 2, x: 1 }] } }),
    );
    expect(first.status).toBe(201);
    expect(first.headers.get('idempotent-replayed')).toBeNull();
    const again = await post(
      api_key,
      'order-1',
      msg({ metadata: { b: 1, a: [1, { y: 2, x: 1 }] } }),
    );
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.text).toBe(first.text);
    expect(again.json.id).toBe(first.json.id);
    expect(await count('messages', id)).toBe(1);
    expect(await count('idempotency_keys', id)).toBe(1);
  });

  test('is recognised whatever the order of its object keys', async () => {
    const { api_key, id } = await t.tenant();
    const first = await post(api_key, 'k', {
      conversation_id: 'c',
      role: 'user',
      content: 'x',
      metadata: { outer: { a: 1, b: 2 }, z: true },
    });
    const reordered = await post(api_key, 'k', {
      metadata: { z: true, outer: { b: 2, a: 1 } },
      content: 'x',
      role: 'user',
      conversation_id: 'c',
    });
    expect(reordered.status).toBe(201);
    expect(reordered.headers.get('idempotent-replayed')).toBe('true');
    expect(reordered.json.id).toBe(first.json.id);
    expect(await count('messages', id)).toBe(1);
  });

  test('replays a batch with all its ids in order', async () => {
    const { api_key, id } = await t.tenant();
    const body = { messages: [msg({ content: 'a' }), msg({ content: 'b', conversation_id: 'z' })] };
    const first = await post(api_key, 'batch-1', body, '/v1/messages/batch');
    expect(first.status).toBe(201);
    const again = await post(api_key, 'batch-1', body, '/v1/messages/batch');
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.text).toBe(first.text);
    expect(await count('messages', id)).toBe(2);
  });
});

describe('a key reused for another request', () => {
  test('with a different body gets 409 idempotency_conflict and stores nothing', async () => {
    const { api_key, id } = await t.tenant();
    expect((await post(api_key, 'k', msg())).status).toBe(201);
    const res = await post(api_key, 'k', msg({ content: 'something else' }));
    expect(res.status).toBe(409);
    expect(Object.keys(res.json)).toEqual(['error']);
    expect(res.json.error.code).toBe('idempotency_conflict');
    expect(res.json.error.request_id).toBeString();
    expect(res.headers.get('idempotent-replayed')).toBeNull();
    expect(await count('messages', id)).toBe(1);
  });

  test('on the other route (single vs batch) gets 409, in both directions', async () => {
    const { api_key, id } = await t.tenant();
    expect((await post(api_key, 'single', msg())).status).toBe(201);
    const asBatch = await post(api_key, 'single', { messages: [msg()] }, '/v1/messages/batch');
    expect(asBatch.status).toBe(409);
    expect(asBatch.json.error.code).toBe('idempotency_conflict');

    expect((await post(api_key, 'batch', { messages: [msg()] }, '/v1/messages/batch')).status).toBe(
      201,
    );
    const asSingle = await post(api_key, 'batch', msg());
    expect(asSingle.status).toBe(409);
    expect(asSingle.json.error.code).toBe('idempotency_conflict');
    expect(await count('messages', id)).toBe(2);
  });
});

describe('concurrent requests with one key', () => {
  test('20 at once store exactly one message and all get the same 201', async () => {
    const { api_key, id } = await t.tenant();
    const results = await Promise.all(
      Array.from({ length: 20 }, () => post(api_key, 'burst', msg({ content: 'once' }))),
    );
    expect(results.map((r) => r.status)).toEqual(Array(20).fill(201));
    expect(new Set(results.map((r) => r.json.id)).size).toBe(1);
    expect(new Set(results.map((r) => r.text)).size).toBe(1);
    // Exactly one of them did the write; the others replayed it.
    expect(results.filter((r) => r.headers.get('idempotent-replayed') === 'true').length).toBe(19);
    expect(await count('messages', id)).toBe(1);
    expect(await count('idempotency_keys', id)).toBe(1);
  });
});

describe('keys are per tenant', () => {
  test("tenant B's use of A's key value neither replays nor conflicts with A's", async () => {
    const a = await t.tenant('a');
    const b = await t.tenant('b');
    const fromA = await post(a.api_key, 'shared-value', msg({ content: 'from a' }));
    const fromB = await post(b.api_key, 'shared-value', msg({ content: 'from b' }));
    expect(fromB.status).toBe(201);
    expect(fromB.headers.get('idempotent-replayed')).toBeNull();
    expect(fromB.json.id).not.toBe(fromA.json.id);
    expect(fromB.json.content).toBe('from b');
    expect(await count('messages', a.id)).toBe(1);
    expect(await count('messages', b.id)).toBe(1);
    // A's key still replays A's message.
    const againA = await post(a.api_key, 'shared-value', msg({ content: 'from a' }));
    expect(againA.json.id).toBe(fromA.json.id);
  });
});

describe('the Idempotency-Key header', () => {
  const invalid: [string, string][] = [
    ['empty', ''],
    ['256 characters', 'k'.repeat(256)],
    ['a tab', 'a\tb'],
    ['a control character', 'a\u0001b'],
    ['DEL', 'a\u007fb'],
    ['a non-ASCII character', 'clé'],
    ['UTF-8 bytes read as Latin-1', 'â\u0082¬'],
  ];
  for (const [name, value] of invalid) {
    test(`with ${name} gets 422 validation_failed and stores nothing`, async () => {
      const { api_key, id } = await t.tenant();
      for (const [path, body] of [
        ['/v1/messages', msg()],
        ['/v1/messages/batch', { messages: [msg()] }],
      ] as const) {
        const res = await post(api_key, value, body, path);
        expect(res.status).toBe(422);
        expect(Object.keys(res.json)).toEqual(['error']);
        expect(res.json.error.code).toBe('validation_failed');
        expect(res.json.error.details[0]).toMatchObject({ in: 'headers' });
      }
      expect(await count('messages', id)).toBe(0);
      expect(await count('idempotency_keys', id)).toBe(0);
    });
  }

  test('accepts 1 and 255 visible ASCII characters, with spaces inside', async () => {
    const { api_key, id } = await t.tenant();
    const printable = Array.from({ length: 94 }, (_, i) => String.fromCharCode(0x21 + i)).join('');
    for (const key of ['k', 'x'.repeat(255), printable, 'order 42 / retry']) {
      const res = await post(api_key, key, msg());
      expect({ key, status: res.status }).toEqual({ key, status: 201 });
    }
    expect(await count('idempotency_keys', id)).toBe(4);
  });

  test('refuses spaces at either end (which HTTP parsers strip before we see them)', () => {
    const ok = (key: string) => Value.Check(CreateHeaders, { 'idempotency-key': key });
    expect(ok('a b')).toBe(true);
    expect(ok(' a')).toBe(false);
    expect(ok('a ')).toBe(false);
    expect(ok(' ')).toBe(false);
    expect(Value.Check(CreateHeaders, {})).toBe(true);
  });

  test('without it, every request is stored and no key is recorded', async () => {
    const { api_key, id } = await t.tenant();
    const first = await t.call('POST', '/v1/messages', { key: api_key, body: msg() });
    const second = await t.call('POST', '/v1/messages', { key: api_key, body: msg() });
    expect([first.status, second.status]).toEqual([201, 201]);
    expect(second.json.id).not.toBe(first.json.id);
    expect(second.headers.get('idempotent-replayed')).toBeNull();
    expect(await count('messages', id)).toBe(2);
    expect(await count('idempotency_keys', id)).toBe(0);
  });

  test('is documented on both create routes', async () => {
    const doc = (await t.call('GET', '/openapi.json')).json;
    for (const path of ['/v1/messages', '/v1/messages/batch']) {
      const params = doc.paths[path].post.parameters as { name: string; in: string }[];
      expect(params).toContainEqual(
        expect.objectContaining({ name: 'idempotency-key', in: 'header' }),
      );
    }
  });
});

describe('a write that fails', () => {
  test('a batch refused by validation stores neither messages nor the key', async () => {
    const { api_key, id } = await t.tenant();
    const good = [msg({ content: 'a' }), msg({ content: 'b' })];
    // Refused by the schema, then by the checks the schema cannot express.
    const badSchema = await post(
      api_key,
      'fix-me',
      { messages: [...good, msg({ role: 'nobody' })] },
      '/v1/messages/batch',
    );
    expect(badSchema.status).toBe(422);
    const badContent = await post(
      api_key,
      'fix-me',
      { messages: [...good, msg({ content: '' })] },
      '/v1/messages/batch',
    );
    expect(badContent.status).toBe(422);
    expect(await count('messages', id)).toBe(0);
    expect(await count('idempotency_keys', id)).toBe(0);
    // The corrected request with the same key is a first request, not a conflict.
    const fixed = await post(api_key, 'fix-me', { messages: good }, '/v1/messages/batch');
    expect(fixed.status).toBe(201);
    expect(fixed.headers.get('idempotent-replayed')).toBeNull();
    expect(await count('messages', id)).toBe(2);
  });

  test('a database failure mid-batch rolls back the key too, so a retry proceeds', async () => {
    const { api_key, id } = await t.tenant();
    const marker = `idem-explode-${id}`;
    await t.db.execute(
      sql.raw(`create or replace function test_idem_refuse() returns trigger language plpgsql as $$
        begin if new.content = '${marker}' then raise exception 'refused by test trigger'; end if;
        return new; end $$`),
    );
    await t.db.execute(
      sql.raw(`create or replace trigger test_idem_refuse before insert on messages
        for each row execute function test_idem_refuse()`),
    );
    const body = { messages: [msg({ content: 'a' }), msg({ content: marker })] };
    try {
      const failed = await post(api_key, 'flaky', body, '/v1/messages/batch');
      expect(failed.status).toBe(500);
      expect(await count('messages', id)).toBe(0);
      expect(await count('idempotency_keys', id)).toBe(0);
    } finally {
      await t.db.execute(sql.raw(`drop trigger if exists test_idem_refuse on messages`));
    }
    const retried = await post(api_key, 'flaky', body, '/v1/messages/batch');
    expect(retried.status).toBe(201);
    expect(retried.headers.get('idempotent-replayed')).toBeNull();
    expect(await count('messages', id)).toBe(2);
    expect(await count('idempotency_keys', id)).toBe(1);
  });
  test('a failure recording the key rolls back the messages, so none is stored without it', async () => {
    const { api_key, id } = await t.tenant();
    // Refuses to record the response of this one key: the last step of the transaction.
    await t.db.execute(
      sql.raw(`create or replace function test_idem_refuse_key() returns trigger language plpgsql as $$
        begin if new.key = 'unrecordable-${id}' then raise exception 'refused by test trigger'; end if;
        return new; end $$`),
    );
    await t.db.execute(
      sql.raw(`create or replace trigger test_idem_refuse_key before update on idempotency_keys
        for each row execute function test_idem_refuse_key()`),
    );
    try {
      const res = await post(api_key, `unrecordable-${id}`, msg());
      expect(res.status).toBe(500);
      expect(await count('messages', id)).toBe(0);
      expect(await count('idempotency_keys', id)).toBe(0);
    } finally {
      await t.db.execute(
        sql.raw(`drop trigger if exists test_idem_refuse_key on idempotency_keys`),
      );
    }
  });
});

describe('expiry', () => {
  test('a key older than IDEMPOTENCY_TTL_SECONDS is forgotten: another body is stored', async () => {
    const { api_key, id } = await short.tenant();
    const first = await post(api_key, 'old', msg({ content: 'first' }), '/v1/messages', short);
    expect(first.status).toBe(201);
    // Still live: a different body conflicts.
    expect((await post(api_key, 'old', msg({ content: 'x' }), '/v1/messages', short)).status).toBe(
      409,
    );
    await Bun.sleep(1_300);
    const second = await post(api_key, 'old', msg({ content: 'second' }), '/v1/messages', short);
    expect(second.status).toBe(201);
    expect(second.headers.get('idempotent-replayed')).toBeNull();
    expect(second.json.id).not.toBe(first.json.id);
    expect(await count('messages', id)).toBe(2);
    // The key now belongs to the second request.
    expect(await count('idempotency_keys', id)).toBe(1);
    const replay = await post(api_key, 'old', msg({ content: 'second' }), '/v1/messages', short);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.json.id).toBe(second.json.id);
  });

  test('the purge deletes expired keys only, in bounded batches', async () => {
    const { api_key, id } = await t.tenant();
    for (let i = 0; i < 7; i++) {
      expect((await post(api_key, `purge-${i}`, msg({ content: `p${i}` }))).status).toBe(201);
    }
    // Age five of them past a one-hour TTL.
    await t.db.execute(
      sql`update idempotency_keys set created_at = now() - interval '2 hours'
          where tenant_id = ${id} and key in ('purge-0', 'purge-1', 'purge-2', 'purge-3', 'purge-4')`,
    );
    const deleted = await purgeExpiredIdempotencyKeys(t.db, 3600, 2);
    expect(deleted).toBeGreaterThanOrEqual(5);
    const left = rowsOf<{ key: string }>(
      await t.db.execute(
        sql`select key from idempotency_keys where tenant_id = ${id} order by key`,
      ),
    );
    expect(left.map((r) => r.key)).toEqual(['purge-5', 'purge-6']);
    // Messages are not the purge's business.
    expect(await count('messages', id)).toBe(7);
    expect(await purgeExpiredIdempotencyKeys(t.db, 3600, 2)).toBe(0);
  });
});
