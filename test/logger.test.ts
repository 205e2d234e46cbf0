import { describe, expect, test } from 'bun:test';
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
