import { describe, expect, test } from 'bun:test';
import { PoolGate } from '../src/db/pool-gate';
import { AppError } from '../src/lib/errors';

/** Settles on the next turns of the event loop. */
const tick = () => Bun.sleep(1);

/** Records the order in which acquisitions were granted. */
function recorder(gate: PoolGate) {
  const granted: string[] = [];
  const releases = new Map<string, () => void>();
  const take = (name: string, weight = 1) =>
    gate.acquire(weight).then(
      (release) => {
        granted.push(name);
        releases.set(name, release);
      },
      (err: unknown) => {
        granted.push(`${name}:${err instanceof AppError ? err.code : 'error'}`);
      },
    );
  const release = (name: string) => releases.get(name)!();
  return { granted, take, release };
}

describe('PoolGate', () => {
  test('admits connections × depth queries at once, then queues in order', async () => {
    const gate = new PoolGate(2, 10_000, 3);
    const r = recorder(gate);
    for (const name of ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']) void r.take(name);
    await tick();
    expect(r.granted).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect(gate.stats()).toEqual({ max: 2, inUse: 2, waiting: 2, inFlight: 6 });
    r.release('c');
    await tick();
    expect(r.granted).toEqual(['a', 'b', 'c', 'd', 'e', 'f', 'g']);
    for (const name of ['a', 'b', 'd', 'e', 'f', 'g']) r.release(name);
    await tick();
    r.release('h');
    expect(gate.stats()).toEqual({ max: 2, inUse: 0, waiting: 0, inFlight: 0 });
  });

  test('with depth 1 it is one query per connection', async () => {
    const gate = new PoolGate(2, 10_000);
    const r = recorder(gate);
    for (const name of ['a', 'b', 'c']) void r.take(name);
    await tick();
    expect(r.granted).toEqual(['a', 'b']);
    expect(gate.stats()).toEqual({ max: 2, inUse: 2, waiting: 1, inFlight: 2 });
  });

  test('a transaction takes a whole connection, and queries behind it do not overtake it', async () => {
    const gate = new PoolGate(2, 10_000, 2);
    const r = recorder(gate);
    void r.take('q1');
    void r.take('q2');
    void r.take('q3');
    await tick();
    // One connection's room is left, minus one query: the transaction must wait for a whole one.
    void r.take('tx', 2);
    void r.take('q4');
    await tick();
    expect(r.granted).toEqual(['q1', 'q2', 'q3']);
    r.release('q1');
    await tick();
    expect(r.granted).toEqual(['q1', 'q2', 'q3', 'tx']);
    r.release('q2');
    await tick();
    expect(r.granted).toEqual(['q1', 'q2', 'q3', 'tx', 'q4']);
  });

  test('a waiter past the acquire timeout gets 503 database_busy, and lighter ones behind it go on', async () => {
    const gate = new PoolGate(1, 50, 2);
    const r = recorder(gate);
    void r.take('q1');
    await tick();
    const tx = r.take('tx', 2);
    void r.take('q2');
    await tick();
    // q2 would fit, but waits behind the transaction until that gives up.
    expect(r.granted).toEqual(['q1']);
    await tx;
    await tick();
    expect(r.granted).toEqual(['q1', 'tx:database_busy', 'q2']);
    expect(gate.stats()).toEqual({ max: 1, inUse: 1, waiting: 0, inFlight: 2 });
  });

  test('releasing twice frees the permits once', async () => {
    const gate = new PoolGate(1, 10_000, 1);
    const first = await gate.acquire();
    first();
    first();
    const second = await gate.acquire();
    const third = gate.acquire();
    await tick();
    expect(gate.stats().inFlight).toBe(1);
    second();
    (await third)();
    expect(gate.stats()).toEqual({ max: 1, inUse: 0, waiting: 0, inFlight: 0 });
  });
});

/** Records grants per tenant; each acquisition is named `<tenant><n>` (a1, b2…). */
function tenants(gate: PoolGate) {
  const granted: string[] = [];
  const failed: { name: string; error: AppError }[] = [];
  const releases = new Map<string, () => void>();
  const take = (name: string, signal?: AbortSignal) =>
    gate.acquire(1, { tenantId: name[0], signal }).then(
      (release) => {
        granted.push(name);
        releases.set(name, release);
      },
      (err: AppError) => {
        failed.push({ name, error: err });
      },
    );
  const release = (name: string) => releases.get(name)!();
  return { granted, failed, take, release };
}

describe('PoolGate shares the pool fairly between tenants', () => {
  test('a tenant alone takes every permit, and queues beyond them without refusal', async () => {
    const gate = new PoolGate(20, 10_000, 4, { queueMax: 1000 });
    const r = tenants(gate);
    for (let i = 0; i < 256; i++) void r.take(`a${i}`);
    await tick();
    expect(r.granted).toHaveLength(80);
    expect(r.failed).toEqual([]);
    expect(gate.stats()).toEqual({ max: 20, inUse: 20, waiting: 176, inFlight: 80 });
  });

  test('once another tenant is active, a flood is held to its share of connections and the newcomer goes first', async () => {
    const gate = new PoolGate(4, 10_000, 2, { activeWindowMs: 100 });
    const r = tenants(gate);
    // A alone: every permit, two per connection.
    for (let i = 1; i <= 11; i++) void r.take(`a${i}`);
    await tick();
    expect(r.granted).toEqual(['a1', 'a2', 'a3', 'a4', 'a5', 'a6', 'a7', 'a8']);
    // B asks after A's flood is queued. Shared now: one statement per connection, and
    // at most half of the connections each.
    for (const name of ['b1', 'b2']) void r.take(name);
    await tick();
    for (const name of ['a1', 'a2', 'a3', 'a4']) r.release(name);
    await tick();
    // Four statements still on four connections: none idle, nothing granted.
    expect(r.granted).toHaveLength(8);
    r.release('a5');
    await tick();
    // a9 has waited longest, but B runs nothing and A three.
    expect(r.granted.at(-1)).toBe('b1');
    r.release('a6');
    await tick();
    expect(r.granted.at(-1)).toBe('b2');
    r.release('a7');
    r.release('a8');
    await tick();
    // A's share is two connections: a9 and a10, and a11 waits although one is idle.
    expect(r.granted.slice(-2)).toEqual(['a9', 'a10']);
    r.release('b1');
    await tick();
    expect(r.granted.at(-1)).toBe('a10');
    expect(gate.stats()).toEqual({ max: 4, inUse: 3, waiting: 1, inFlight: 3 });
    // B quiet past the window: A is alone again and takes the rest.
    r.release('b2');
    await Bun.sleep(200);
    r.release('a9');
    await tick();
    expect(r.granted.at(-1)).toBe('a11');
  });

  test('tenants with one statement now and then share one part: a flood keeps half the pool', async () => {
    const gate = new PoolGate(4, 10_000, 1);
    const r = tenants(gate);
    for (let i = 1; i <= 6; i++) void r.take(`a${i}`);
    await tick();
    expect(r.granted).toEqual(['a1', 'a2', 'a3', 'a4']);
    // Three tenants with one statement each, one after the other, each served at once on the
    // first idle connection.
    void r.take('c1');
    await tick();
    r.release('a1');
    await tick();
    expect(r.granted.at(-1)).toBe('c1');
    for (const name of ['d1', 'e1']) {
      r.release(r.granted.at(-1)!);
      await tick();
      void r.take(name);
      await tick();
      expect(r.granted.at(-1)).toBe(name);
    }
    r.release('e1');
    r.release('a2');
    r.release('a3');
    await tick();
    // Counted one by one, four tenants would leave A one connection; as one part, two.
    expect(r.granted.at(-1)).toBe('a5');
    expect(gate.stats()).toEqual({ max: 4, inUse: 2, waiting: 1, inFlight: 2 });
  });

  test('with two tenants waiting and holding alike, freed permits alternate between them', async () => {
    const gate = new PoolGate(1, 10_000, 1);
    const r = tenants(gate);
    void r.take('a1');
    await tick();
    for (const name of ['a2', 'a3', 'a4', 'b1', 'b2', 'b3']) void r.take(name);
    await tick();
    for (let i = 0; i < 6; i++) {
      r.release(r.granted.at(-1)!);
      await tick();
    }
    expect(r.granted).toEqual(['a1', 'b1', 'a2', 'b2', 'a3', 'b3', 'a4']);
  });

  test('a full queue sheds the newest waiter of the tenant with the most waiting, with 429 and Retry-After', async () => {
    const gate = new PoolGate(1, 10_000, 1, { queueMax: 2 });
    const r = tenants(gate);
    for (const name of ['a1', 'a2', 'a3']) void r.take(name);
    await tick();
    expect(gate.stats().waiting).toBe(2);
    // B finds the queue full of A: A's newest waiter makes room.
    void r.take('b1');
    await tick();
    expect(r.failed.map((f) => f.name)).toEqual(['a3']);
    // A and B each have one waiting: a newcomer of A is refused itself.
    void r.take('a4');
    await tick();
    expect(r.failed.map((f) => f.name)).toEqual(['a3', 'a4']);
    for (const { error } of r.failed) {
      expect(error.status).toBe(429);
      expect(error.code).toBe('concurrency_limited');
      expect(error.headers?.['retry-after']).toBe('1');
    }
    r.release('a1');
    await tick();
    expect(r.granted).toEqual(['a1', 'b1']);
  });

  test('a tenant alone in a full queue is refused with 503 database_busy and Retry-After', async () => {
    const gate = new PoolGate(1, 10_000, 1, { queueMax: 1 });
    const r = tenants(gate);
    for (const name of ['a1', 'a2', 'a3']) void r.take(name);
    await tick();
    expect(r.granted).toEqual(['a1']);
    expect(r.failed).toHaveLength(1);
    expect(r.failed[0]!.name).toBe('a3');
    expect(r.failed[0]!.error.status).toBe(503);
    expect(r.failed[0]!.error.code).toBe('database_busy');
    expect(r.failed[0]!.error.headers?.['retry-after']).toBe('1');
  });

  test('a request past its deadline leaves the queue at once and cannot enter it again', async () => {
    const gate = new PoolGate(1, 10_000, 1);
    const r = tenants(gate);
    const deadline = new AbortController();
    void r.take('a1');
    void r.take('b1', deadline.signal);
    void r.take('b2', deadline.signal);
    void r.take('c1');
    await tick();
    deadline.abort();
    await tick();
    expect(r.failed.map((f) => [f.name, f.error.code])).toEqual([
      ['b1', 'request_timeout'],
      ['b2', 'request_timeout'],
    ]);
    expect(gate.stats().waiting).toBe(1);
    void r.take('b3', deadline.signal);
    await tick();
    expect(r.failed.map((f) => f.name)).toContain('b3');
    r.release('a1');
    await tick();
    expect(r.granted).toEqual(['a1', 'c1']);
  });
});
