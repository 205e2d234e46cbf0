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
