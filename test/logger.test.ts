import { describe, expect, test } from 'bun:test';
import { tracingChannel } from 'node:diagnostics_channel';
import { Writable } from 'node:stream';
import { createLogger } from '../src/logger';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  return { lines, logger: createLogger('info', sink) };
}

describe('log lines never carry secrets or message content', () => {
  test('top-level and nested keys are censored, everything else is kept as logged', () => {
    const { lines, logger } = capture();
    const nested = { api_key: 'ts_secret', id: 'x' };
    logger.info(
      { api_key: 'ts_top', authorization: 'Bearer ts_x', tenant: nested, route: '/v1', n: 1 },
      'hello',
    );
    logger.warn({ body: { content: 'private words', role: 'user' }, list: [1, 2] }, 'w');
    expect(lines[0]).toMatchObject({
      api_key: '[redacted]',
      authorization: '[redacted]',
      tenant: { api_key: '[redacted]', id: 'x' },
      route: '/v1',
      n: 1,
      msg: 'hello',
    });
    expect(lines[1]).toMatchObject({ body: { content: '[redacted]', role: 'user' }, list: [1, 2] });
    // The caller's objects are left as they were.
    expect(nested.api_key).toBe('ts_secret');
    expect(JSON.stringify(lines)).not.toContain('ts_');
    expect(JSON.stringify(lines)).not.toContain('private words');
  });
});

describe("pino's tracing channel", () => {
  // pino traces each line only when its channel reports a subscriber; without the getter (as Bun
  // ships it) every line paid for the tracing. The channel must still work for a subscriber.
  test('reports no subscriber until one subscribes, and then traces every line', () => {
    const { lines, logger } = capture();
    const channel = tracingChannel('pino_asJson');
    expect(channel.hasSubscribers).toBe(false);
    const traced: unknown[] = [];
    const subscriber = {
      start: (ctx: unknown) => traced.push(ctx),
      end() {},
      asyncStart() {},
      asyncEnd() {},
      error() {},
    };
    channel.subscribe(subscriber);
    try {
      expect(channel.hasSubscribers).toBe(true);
      logger.info({ n: 1 }, 'traced');
      expect(traced).toHaveLength(1);
    } finally {
      channel.unsubscribe(subscriber);
    }
    expect(channel.hasSubscribers).toBe(false);
    logger.info({ n: 2 }, 'untraced');
    expect(traced).toHaveLength(1);
    expect(lines.map((l) => l.msg)).toEqual(['traced', 'untraced']);
  });
});
