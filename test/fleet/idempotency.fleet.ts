// Idempotency-Key across a fleet: a client that retries through a load balancer may reach
// another instance while its first attempt is still running there. The key is claimed in
// PostgreSQL, so the write happens once whichever instances the attempts reach.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { BUILD_TIMEOUT_MS, killAllServers, type ServerProcess } from '../../harness/binary';
import { faultBinary } from '../faults/support';
import { REPLAYED_HEADER } from '../../src/modules/messages/idempotency';
import { concurrently, type Fleet, message, startFleet } from './support';

/** Keys raced per test: each sent to every instance at once. */
const KEYS = 30;

let fleet: Fleet;

beforeAll(async () => {
  await faultBinary();
  fleet = await startFleet('idempotency');
}, BUILD_TIMEOUT_MS);

afterAll(async () => {
  await fleet?.close();
  await killAllServers();
});

/** One write with an Idempotency-Key to one instance. */
async function keyedWrite(
  server: ServerProcess,
  tenantKey: string,
  idempotencyKey: string,
  body: unknown,
) {
  const res = await fetch(server.url('/v1/messages'), {
    method: 'POST',
    headers: {
      authorization: `Bearer ${tenantKey}`,
      'content-type': 'application/json',
      'idempotency-key': idempotencyKey,
    },
    body: JSON.stringify(body),
  });
  return {
    status: res.status,
    replayed: res.headers.get(REPLAYED_HEADER) === 'true',
    body: (await res.json()) as any,
  };
}

/** The same keyed write sent to every instance at once. */
const race = (tenantKey: string, idempotencyKey: string, body: unknown) =>
  Promise.all(fleet.instances.map((s) => keyedWrite(s, tenantKey, idempotencyKey, body)));

describe('an Idempotency-Key sent to several instances at once', () => {
  test('stores exactly one message, and every answer carries its id', async () => {
    const tenant = await fleet.createTenant();
    const rounds = await concurrently(KEYS, (i) =>
      race(tenant.key, `fleet-key-${i}`, message(`keyed ${i}`)),
    );
    const rows = await fleet.sql<{ id: string; content: string }[]>`
      select id, content from messages where tenant_id = ${tenant.id}`;
    expect(rows.length).toBe(KEYS);
    for (const [i, answers] of rounds.entries()) {
      expect(answers.map((a) => a.status)).toEqual(answers.map(() => 201));
      // One instance wrote; the others replayed what it answered.
      expect(answers.filter((a) => !a.replayed).length).toBe(1);
      const ids = new Set(answers.map((a) => a.body.id));
      expect(ids.size).toBe(1);
      const row = rows.find((r) => r.content === `keyed ${i}`);
      expect(row?.id).toBe([...ids][0]);
    }
    const keys = await fleet.sql<{ n: number }[]>`
      select count(*)::int as n from idempotency_keys
      where tenant_id = ${tenant.id} and response_status = 201`;
    expect(keys[0]?.n).toBe(KEYS);
  }, 30_000);

  test('the same key with another body on another instance is a conflict and stores nothing', async () => {
    const tenant = await fleet.createTenant();
    const first = await keyedWrite(fleet.instances[0]!, tenant.key, 'k', message('original'));
    expect(first.status).toBe(201);
    const conflicting = await keyedWrite(fleet.instances[1]!, tenant.key, 'k', message('changed'));
    expect(conflicting.status).toBe(409);
    expect(conflicting.body.error.code).toBe('idempotency_conflict');
    const replayed = await keyedWrite(fleet.instances[2]!, tenant.key, 'k', message('original'));
    expect(replayed).toEqual({ status: 201, replayed: true, body: first.body });
    const rows = await fleet.sql<{ content: string }[]>`
      select content from messages where tenant_id = ${tenant.id}`;
    expect(rows.map((r) => r.content)).toEqual(['original']);
  }, 30_000);
});
