import { describe, expect, test } from 'bun:test';
import { AppError, causes, ERROR_STATUS, errors, RETRY_AFTER_SECONDS } from '../src/lib/errors';
import { serializeError } from '../src/logger';
import { sharedApp } from './support/app';

/** One instance of every constructor of the catalogue, by name. */
const samples: Record<keyof typeof errors, AppError> = {
  malformedJson: errors.malformedJson(),
  invalidCursor: errors.invalidCursor(),
  invalidCookieSignature: errors.invalidCookieSignature(),
  unauthorized: errors.unauthorized('no key'),
  forbidden: errors.forbidden('disabled'),
  notFound: errors.notFound('Thing not found'),
  methodNotAllowed: errors.methodNotAllowed('POST only', 'POST'),
  conflict: errors.conflict(),
  idempotencyConflict: errors.idempotencyConflict(),
  payloadTooLarge: errors.payloadTooLarge('too large', { max_bytes: 1 }),
  unsupportedMediaType: errors.unsupportedMediaType(),
  validationFailed: errors.validationFailed('bad', [{ path: '/x' }]),
  semanticSearchDisabled: errors.semanticSearchDisabled('off'),
  rateLimited: errors.rateLimited('slow down', {
    budget: 'read',
    limit: 1,
    retry_after_seconds: 7,
  }),
  concurrencyLimited: errors.concurrencyLimited(),
  internal: errors.internal(),
  databaseUnavailable: errors.databaseUnavailable(),
  databaseTimeout: errors.databaseTimeout(),
  databaseBusy: errors.databaseBusy(),
  notReady: errors.notReady('stopping'),
  rateLimitUnavailable: errors.rateLimitUnavailable(),
  requestTimedOut: errors.requestTimedOut(),
  embeddingsUnavailable: errors.embeddingsUnavailable(2.3, new Error('provider down')),
};

describe('the error catalogue', () => {
  test("every constructor gives its code's status from the one table", () => {
    for (const [name, err] of Object.entries(samples)) {
      expect(err).toBeInstanceOf(AppError);
      // Elysia's signed-cookie refusal keeps its 400 (documented in the catalogue).
      const status = name === 'invalidCookieSignature' ? 400 : ERROR_STATUS[err.code];
      expect({ name, status: err.status }).toEqual({ name, status });
    }
  });

  test('every code of the table has a constructor', () => {
    const made = new Set<string>(Object.values(samples).map((e) => e.code));
    expect([...made].sort()).toEqual(Object.keys(ERROR_STATUS).sort());
  });

  test('sends Retry-After with the fixed waits, and only with them', () => {
    const retryAfter = Object.fromEntries(
      Object.values(samples)
        .filter((e) => e.headers?.['retry-after'] !== undefined)
        .map((e) => [e.code, e.headers!['retry-after']]),
    );
    expect(retryAfter).toEqual({
      database_unavailable: '2',
      database_timeout: '2',
      database_busy: '1',
      concurrency_limited: '1',
      not_ready: '5',
      rate_limit_unavailable: '1',
      request_timeout: '1',
      rate_limited: '7',
      embeddings_unavailable: '3',
    });
    for (const [code, seconds] of Object.entries(RETRY_AFTER_SECONDS)) {
      expect(retryAfter[code]).toBe(String(seconds));
    }
  });

  test('a rate limit at its window end still asks for at least one second', () => {
    const err = errors.rateLimited('x', { budget: 'read', limit: 1, retry_after_seconds: 0 });
    expect(err.headers).toEqual({ 'retry-after': '1' });
    expect(err.details).toEqual({ budget: 'read', limit: 1, retry_after_seconds: 0 });
  });

  test('keeps the challenge and Allow headers, and the cause of an embedding outage', () => {
    expect(samples.unauthorized.headers).toEqual({ 'www-authenticate': 'Bearer' });
    expect(samples.methodNotAllowed.headers).toEqual({ allow: 'POST' });
    expect(samples.conflict.headers).toBeUndefined();
    expect((samples.embeddingsUnavailable.cause as Error).message).toBe('provider down');
    expect(samples.embeddingsUnavailable.message).toContain('retry in 3 s');
  });
});

describe('walking a cause chain', () => {
  test('yields the error and its causes, outermost first', () => {
    const inner = Object.assign(new Error('inner'), { code: '57014' });
    const middle = new Error('middle', { cause: inner });
    const outer = new Error('outer', { cause: middle });
    expect([...causes(outer)]).toEqual([outer, middle, inner]);
  });

  test('stops at a missing cause, after a thrown string, and after its limit on a cycle', () => {
    expect([...causes(undefined)]).toEqual([]);
    expect([...causes(null)]).toEqual([]);
    expect([...causes('thrown text')]).toEqual(['thrown text']);
    const a = new Error('a');
    const b = new Error('b', { cause: a });
    a.cause = b;
    expect([...causes(a)]).toHaveLength(5);
    expect([...causes(a, 2)]).toEqual([a, b]);
  });

  test('the log line of a cyclic error holds five links', () => {
    const a = new Error('a');
    a.cause = new Error('b', { cause: a });
    let links = 0;
    for (let e: { cause?: unknown } | undefined = serializeError(a); e; e = e.cause as never) {
      links++;
    }
    expect(links).toBe(5);
  });
});

describe('the OpenAPI error docs', () => {
  test('list every error code with its status, from the table', async () => {
    const t = await sharedApp();
    const doc = JSON.stringify((await t.call('GET', '/openapi.json')).json);
    for (const [code, status] of Object.entries(ERROR_STATUS)) {
      expect(doc).toContain(`${code} (${status})`);
    }
  });
});
