// The fake embeddings API other tests rely on: its answers must look like OpenAI's, its vectors
// must carry meaning, and each failure mode must fail the way a real provider does.
import { afterEach, beforeEach, describe, expect, test } from 'bun:test';
import {
  cosineSimilarity,
  EMBEDDING_SERVER_MODES,
  type EmbeddingServer,
  embedText,
  startEmbeddingServer,
} from '../../harness/embedding-server';

const KEY = 'test-embedding-key';
let server: EmbeddingServer;

beforeEach(() => {
  server = startEmbeddingServer();
});

afterEach(async () => {
  await server.stop();
});

/** One POST to the embeddings route; `body` is sent as is when it is a string. */
async function embed(
  body: unknown,
  { key = KEY as string | null, signal }: { key?: string | null; signal?: AbortSignal } = {},
) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key !== null) headers.authorization = `Bearer ${key}`;
  const res = await fetch(`${server.url}/embeddings`, {
    method: 'POST',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal,
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

const body = (input: unknown, extra: Record<string, unknown> = {}) => ({
  model: 'text-embedding-3-small',
  input,
  ...extra,
});

describe('answers like the OpenAI embeddings API', () => {
  test('lives at <url>/embeddings with url ending in /v1, on 127.0.0.1', () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    expect(server.url).toBe(`http://127.0.0.1:${server.port}/v1`);
  });

  test('returns a list with one unit vector per input, in order, the model and token usage', async () => {
    const res = await embed(body(['first message', 'the second one']));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(res.json).toEqual({
      object: 'list',
      data: [
        { object: 'embedding', embedding: embedText('first message', 64), index: 0 },
        { object: 'embedding', embedding: embedText('the second one', 64), index: 1 },
      ],
      model: 'text-embedding-3-small',
      usage: { prompt_tokens: 5, total_tokens: 5 },
    });
    for (const item of res.json.data) {
      expect(item.embedding).toHaveLength(64);
      expect(Math.hypot(...item.embedding)).toBeCloseTo(1, 10);
    }
  });

  test('takes a single string, and honours dimensions', async () => {
    const res = await embed(body('just one', { dimensions: 1536 }));
    expect(res.status).toBe(200);
    expect(res.json.data).toHaveLength(1);
    expect(res.json.data[0].embedding).toEqual(embedText('just one', 1536));
  });

  test('refuses a body that is not an embeddings request with 400', async () => {
    for (const bad of ['{not json', body([]), body([1, 2]), { input: 'no model' }]) {
      const res = await embed(bad);
      expect(res.status).toBe(400);
      expect(res.json.error).toMatchObject({ type: 'invalid_request_error' });
    }
    expect((await embed(body('x', { dimensions: 0 }))).status).toBe(400);
  });

  test('answers 404 elsewhere and 405 to other methods', async () => {
    expect((await fetch(`${server.url}/completions`, { method: 'POST' })).status).toBe(404);
    expect((await fetch(`${server.url}/embeddings`)).status).toBe(405);
  });
});

describe('checks the bearer key', () => {
  test('answers 401 with an OpenAI error to a missing or wrong key, and counts them', async () => {
    const missing = await embed(body('x'), { key: null });
    expect(missing.status).toBe(401);
    expect(missing.json).toEqual({
      error: {
        message: "You didn't provide an API key.",
        type: 'invalid_request_error',
        param: null,
        code: null,
      },
    });
    const wrong = await embed(body('x'), { key: 'sk-wrong' });
    expect(wrong.status).toBe(401);
    expect(wrong.json.error).toMatchObject({ code: 'invalid_api_key' });
    expect(server.unauthorized).toBe(2);
    expect(server.received).toEqual([]);
  });

  test('accepts any request when started with apiKey: null', async () => {
    await server.stop();
    server = startEmbeddingServer({ apiKey: null });
    expect((await embed(body('x'), { key: null })).status).toBe(200);
    expect((await embed(body('x'), { key: 'anything' })).status).toBe(200);
  });
});

describe('vectors', () => {
  test('are deterministic: the same text gives the same vector on every call', async () => {
    const a = await embed(body('refund request for order 123'));
    const b = await embed(body(['other', 'refund request for order 123']));
    expect(b.json.data[1].embedding).toEqual(a.json.data[0].embedding);
    expect(embedText('Refund request for order 123!')).toEqual(
      embedText('refund request for order 123'),
    );
  });

  test('put related texts closer together than unrelated ones', () => {
    for (const dims of [64, 256, 1536]) {
      const question = embedText('how do I get a refund for my order', dims);
      const related = embedText('refund request for order 123', dims);
      const unrelated = embedText('the weather in Paris is sunny', dims);
      const sameStem = embedText('Refunds for orders', dims);
      expect(cosineSimilarity(question, related)).toBeGreaterThan(0.5);
      expect(cosineSimilarity(question, sameStem)).toBeGreaterThan(0.5);
      expect(cosineSimilarity(question, related)).toBeGreaterThan(
        cosineSimilarity(question, unrelated) + 0.3,
      );
    }
  });

  test('of a text without content words are one fixed, non-zero unit vector', () => {
    const empty = embedText('', 8);
    expect(empty).toEqual(new Array(8).fill(1 / Math.sqrt(8)));
    expect(embedText('How do I?', 8)).toEqual(empty);
  });
});

describe('failure modes', () => {
  test('fail500 answers 500 server_error', async () => {
    server.mode = 'fail500';
    const res = await embed(body('x'));
    expect(res.status).toBe(500);
    expect(res.json.error).toMatchObject({ type: 'server_error' });
  });

  test('fail503 answers 503 service_unavailable without Retry-After', async () => {
    server.mode = 'fail503';
    const res = await embed(body('x'));
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBeNull();
    expect(res.json.error).toMatchObject({ type: 'service_unavailable' });
  });

  test('failFor(text) fails every request carrying that text, alone or in a batch, until reset', async () => {
    server.failFor('poison');
    expect((await embed(body(['fine', 'poison']))).status).toBe(503);
    expect((await embed(body('poison'))).status).toBe(503);
    expect((await embed(body('fine'))).status).toBe(200);
    server.failFor('other', 'fail500');
    expect((await embed(body(['other']))).status).toBe(500);
    expect(server.requests.map((r) => r.mode)).toEqual(['fail503', 'fail503', 'ok', 'fail500']);
    server.reset();
    expect((await embed(body('poison'))).status).toBe(200);
  });

  test('errorDetail is appended to the message of every error answer, and only of errors', async () => {
    server.errorDetail = '(key sk-live-abc123)';
    server.mode = 'fail503';
    const failed = await embed(body('x'));
    expect(failed.json.error.message).toEndWith(' (key sk-live-abc123)');
    expect(failed.json.error.type).toBe('service_unavailable');
    expect((await embed(body('x'), { key: 'sk-wrong' })).json.error.message).toContain(
      'sk-live-abc123',
    );
    server.mode = 'ok';
    expect((await embed(body('x'))).text).not.toContain('sk-live-abc123');
  });

  test('rateLimit429 answers 429 with the configured Retry-After', async () => {
    server.mode = 'rateLimit429';
    server.retryAfterSeconds = 7;
    const res = await embed(body('x'));
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('7');
    expect(res.json.error).toMatchObject({ code: 'rate_limit_exceeded' });
  });

  test('reject400 answers a permanent 400 "input rejected"', async () => {
    server.mode = 'reject400';
    const res = await embed(body('x'));
    expect(res.status).toBe(400);
    expect(res.json.error).toMatchObject({ code: 'input_rejected', param: 'input' });
    expect(res.json.error.message).toStartWith('input rejected');
  });

  test('malformed answers 200 with a body that is not JSON', async () => {
    server.mode = 'malformed';
    const res = await embed(body('x'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(() => JSON.parse(res.text)).toThrow();
  });

  test('wrongDimension answers 200 with vectors one longer than asked', async () => {
    server.mode = 'wrongDimension';
    const res = await embed(body(['x', 'y'], { dimensions: 16 }));
    expect(res.status).toBe(200);
    expect(res.json.data.map((d: { embedding: number[] }) => d.embedding.length)).toEqual([17, 17]);
  });

  test('slow answers correctly after delayMs', async () => {
    server.mode = 'slow';
    server.delayMs = 150;
    const started = performance.now();
    const res = await embed(body('x'));
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
    expect(res.status).toBe(200);
  });

  test('stall holds requests until release()', async () => {
    server.mode = 'stall';
    const pending = embed(body('held'));
    while (server.stalled === 0) await Bun.sleep(5);
    const raced = await Promise.race([pending, Bun.sleep(100).then(() => 'still waiting')]);
    expect(raced).toBe('still waiting');
    expect(server.release()).toBe(1);
    expect((await pending).status).toBe(200);
    expect(server.embedded).toEqual(['held']);
  });

  test('stall outlasts a client timeout, and a client that left is not counted as embedded', async () => {
    server.mode = 'stall';
    await expect(embed(body('abandoned'), { signal: AbortSignal.timeout(100) })).rejects.toThrow();
    for (let i = 0; i < 100 && server.stalled > 0; i++) await Bun.sleep(10);
    expect(server.stalled).toBe(0);
    expect(server.received).toEqual(['abandoned']);
    expect(server.embedded).toEqual([]);
  });

  test('stall with stallMs answers on its own after that long', async () => {
    server.mode = 'stall';
    server.stallMs = 100;
    const started = performance.now();
    expect((await embed(body('x'))).status).toBe(200);
    expect(performance.now() - started).toBeGreaterThanOrEqual(90);
  });

  test('failNext(n, mode) fails the next n calls, then the current mode answers again', async () => {
    server.failNext(2, 'rateLimit429');
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await embed(body(`m${i}`))).status);
    expect(statuses).toEqual([429, 429, 200]);
    server.failNext(1);
    expect((await embed(body('y'))).status).toBe(500);
  });

  test('stop() ends held requests instead of waiting for them', async () => {
    server.mode = 'stall';
    const pending = embed(body('x')).catch((err: Error) => err);
    while (server.stalled === 0) await Bun.sleep(5);
    await server.stop();
    expect(await pending).toBeInstanceOf(Error);
  });
});

describe('counters', () => {
  test('count calls by mode, and log what was received and what was embedded', async () => {
    await embed(body(['a', 'b']));
    server.mode = 'fail500';
    await embed(body(['c']));
    server.mode = 'ok';
    await embed(body(['c', 'a']));
    await embed(body('x'), { key: 'wrong' });
    await embed('{broken');

    expect(server.calls).toBe(5);
    expect(server.unauthorized).toBe(1);
    expect({ ...server.callsByMode } as Record<string, number>).toEqual({
      ...Object.fromEntries(EMBEDDING_SERVER_MODES.map((m) => [m, 0])),
      ok: 2,
      fail500: 1,
    });
    expect(server.received).toEqual(['a', 'b', 'c', 'c', 'a']);
    expect(server.embedded).toEqual(['a', 'b', 'c', 'a']);
    expect(server.inputsEmbedded).toBe(4);
    expect(server.timesEmbedded('a')).toBe(2);
    expect(server.timesEmbedded('c')).toBe(1);
    expect(server.requests.map((r) => [r.inputs, r.mode])).toEqual([
      [['a', 'b'], 'ok'],
      [['c'], 'fail500'],
      [['c', 'a'], 'ok'],
    ]);
    expect(server.requests[0]).toMatchObject({
      model: 'text-embedding-3-small',
      dimensions: undefined,
    });

    server.mode = 'slow';
    server.reset();
    expect(server.mode as string).toBe('ok');
    expect([server.calls, server.inputsEmbedded, server.received.length]).toEqual([0, 0, 0]);
  });
});
