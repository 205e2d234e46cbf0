// A real local HTTP server speaking the OpenAI embeddings API, for tests of the embedding client,
// worker and search, and for the bench: it answers with deterministic vectors in which related
// texts are near each other, and can be told to fail, rate-limit, stall, slow down or answer
// nonsense.
//
// Route: POST {url}/embeddings, where url = http://127.0.0.1:<port><pathPrefix> and pathPrefix
// defaults to '/v1' (OpenAI's own layout), so `url` is what goes into EMBEDDING_URL.
import { embedText, tokenCount } from './fake-embedding';

export { cosineSimilarity, embedText } from './fake-embedding';

/** What the server does with the next authorised, well-formed request. */
export type EmbeddingServerMode =
  /** 200 with one vector per input. */
  | 'ok'
  /** 500 server_error. */
  | 'fail500'
  /** 503 service_unavailable ("overloaded"), without Retry-After. */
  | 'fail503'
  /** 429 rate_limit_exceeded with `Retry-After: retryAfterSeconds`. */
  | 'rateLimit429'
  /** Holds the request until release(), stop(), the client leaving, or stallMs; then as 'ok'. */
  | 'stall'
  /** Waits delayMs, then as 'ok'. */
  | 'slow'
  /** 200 with a truncated JSON body. */
  | 'malformed'
  /** 200 with vectors one longer than asked for. */
  | 'wrongDimension'
  /** 400 invalid_request_error "input rejected": a permanent refusal, retrying cannot help. */
  | 'reject400';

/** Every mode, for tests that go through all of them. */
export const EMBEDDING_SERVER_MODES: readonly EmbeddingServerMode[] = [
  'ok',
  'fail500',
  'fail503',
  'rateLimit429',
  'stall',
  'slow',
  'malformed',
  'wrongDimension',
  'reject400',
];

/** Settings of startEmbeddingServer(); all but the first four can be changed later too. */
export interface EmbeddingServerOptions {
  /** Port on 127.0.0.1; default 0 (a free one). Reusing a stopped server's port brings it "back". */
  port?: number;
  /** Vector length when a request has no `dimensions` (requests that have it get it). Default 64. */
  dimensions?: number;
  /** Expected bearer key; null accepts any request, with or without one. Default 'test-embedding-key'. */
  apiKey?: string | null;
  /** Path in front of /embeddings; part of `url`. Default '/v1'. */
  pathPrefix?: string;
  /** Starting mode. Default 'ok'. */
  mode?: EmbeddingServerMode;
  /** Retry-After of 'rateLimit429', in seconds. Default 1. */
  retryAfterSeconds?: number;
  /** Delay of 'slow', in ms. Default 200. */
  delayMs?: number;
  /** How long 'stall' holds a request before answering; null (default) until release(). */
  stallMs?: number | null;
  /**
   * Appended to the message of every error answer, e.g. a fake key fragment as real providers
   * echo one ("Incorrect API key provided: sk-...") so a test can check it is never repeated.
   */
  errorDetail?: string | null;
}

/** One authorised, well-formed request, as received. */
export interface ReceivedEmbeddingRequest {
  model: string;
  inputs: string[];
  dimensions: number | undefined;
  /** The mode that answered it. */
  mode: EmbeddingServerMode;
}

/** A running fake embeddings API; mode and its settings may be changed at any time. */
export interface EmbeddingServer {
  /** Base URL for EMBEDDING_URL, e.g. http://127.0.0.1:43121/v1 (the route is `${url}/embeddings`). */
  readonly url: string;
  readonly port: number;
  readonly apiKey: string | null;
  /** Vector length when a request does not say. */
  readonly dimensions: number;
  mode: EmbeddingServerMode;
  retryAfterSeconds: number;
  delayMs: number;
  stallMs: number | null;
  errorDetail: string | null;
  /** The next `count` requests are answered in `mode`, then `this.mode` takes over again. */
  failNext(count: number, mode?: EmbeddingServerMode): void;
  /**
   * Every request whose inputs include `text` is answered in `mode` (after failNext's queue,
   * before `this.mode`), until reset(): a message the provider fails, whatever comes with it.
   */
  failFor(text: string, mode?: EmbeddingServerMode): void;
  /** Answers every request held by 'stall' now; returns how many there were. */
  release(): number;
  /** Requests currently held by 'stall'. */
  readonly stalled: number;
  /** Every request to the server, including 401s, malformed requests and unknown paths. */
  readonly calls: number;
  /** Requests refused for a missing or wrong key. */
  readonly unauthorized: number;
  /** Authorised, well-formed requests by the mode that answered them. */
  readonly callsByMode: Readonly<Record<EmbeddingServerMode, number>>;
  /** Authorised, well-formed requests in arrival order. */
  readonly requests: readonly ReceivedEmbeddingRequest[];
  /** Every input string of those requests, whatever the answer, in arrival order. */
  readonly received: readonly string[];
  /** Inputs answered with correct vectors (ok, slow, stall), not counting clients that left. */
  readonly embedded: readonly string[];
  /** embedded.length. */
  readonly inputsEmbedded: number;
  /** How many times `text` was answered with a correct vector. */
  timesEmbedded(text: string): number;
  /** Forgets counters and logs and returns to 'ok'; settings and port stay. */
  reset(): void;
  /** Closes every connection (held requests included) and stops listening. */
  stop(): Promise<void>;
}

const DEFAULT_DIMENSIONS = 64;
const DEFAULT_API_KEY = 'test-embedding-key';
const DEFAULT_RETRY_AFTER_SECONDS = 1;
const DEFAULT_DELAY_MS = 200;

/** Starts a fake embeddings API on 127.0.0.1 on a free port. */
export function startEmbeddingServer(options: EmbeddingServerOptions = {}): EmbeddingServer {
  const prefix = (options.pathPrefix ?? '/v1').replace(/\/+$/, '');
  const route = `${prefix}/embeddings`;
  const apiKey = options.apiKey === undefined ? DEFAULT_API_KEY : options.apiKey;
  const failQueue: EmbeddingServerMode[] = [];
  const failInputs = new Map<string, EmbeddingServerMode>();
  const held = new Set<() => void>();
  let stopping = false;
  let embedded: string[] = [];
  let requests: ReceivedEmbeddingRequest[] = [];
  const counters = { calls: 0, unauthorized: 0 };
  const emptyByMode = () =>
    Object.fromEntries(EMBEDDING_SERVER_MODES.map((m) => [m, 0])) as Record<
      EmbeddingServerMode,
      number
    >;
  let byMode = emptyByMode();

  /** Resolves after `ms` (null: never on its own), on release(), on stop(), or when the client leaves. */
  const hold = (ms: number | null, signal: AbortSignal): Promise<void> =>
    new Promise((resolve) => {
      const done = (): void => {
        if (timer) clearTimeout(timer);
        held.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = ms === null ? undefined : setTimeout(done, ms);
      held.add(done);
      signal.addEventListener('abort', done);
    });

  const answer = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    if (url.pathname !== route) {
      return openAiError(
        404,
        `Invalid URL (${req.method} ${url.pathname})`,
        'invalid_request_error',
      );
    }
    if (req.method !== 'POST') {
      return openAiError(
        405,
        `Method ${req.method} not allowed on ${route}`,
        'invalid_request_error',
      );
    }
    if (apiKey !== null) {
      const given = /^Bearer (.+)$/.exec(req.headers.get('authorization') ?? '')?.[1];
      if (given !== apiKey) {
        counters.unauthorized++;
        return given === undefined
          ? openAiError(401, "You didn't provide an API key.", 'invalid_request_error')
          : openAiError(
              401,
              'Incorrect API key provided.',
              'invalid_request_error',
              null,
              'invalid_api_key',
            );
      }
    }
    const parsed = parseBody(await req.text());
    if (typeof parsed === 'string') {
      return openAiError(400, parsed, 'invalid_request_error', 'input');
    }

    const mode =
      failQueue.shift() ??
      parsed.inputs.map((i) => failInputs.get(i)).find((m) => m !== undefined) ??
      server.mode;
    byMode[mode]++;
    requests.push({ ...parsed, mode });
    const dims = parsed.dimensions ?? server.dimensions;

    switch (mode) {
      case 'fail500':
        return openAiError(
          500,
          'The server had an error while processing your request. Sorry about that!',
          'server_error',
        );
      case 'fail503':
        return openAiError(
          503,
          'The engine is currently overloaded, please try again later.',
          'service_unavailable',
        );
      case 'rateLimit429': {
        const res = openAiError(
          429,
          `Rate limit reached for ${parsed.model}. Please try again in ${server.retryAfterSeconds}s.`,
          'requests',
          null,
          'rate_limit_exceeded',
        );
        res.headers.set('retry-after', String(server.retryAfterSeconds));
        return res;
      }
      case 'reject400':
        return openAiError(
          400,
          'input rejected: this input cannot be embedded',
          'invalid_request_error',
          'input',
          'input_rejected',
        );
      case 'malformed':
        return new Response('{"object":"list","data":[{"object":"embedding","embedding":[0.1,', {
          headers: { 'content-type': 'application/json' },
        });
      case 'wrongDimension':
        return Response.json(listBody(parsed.model, parsed.inputs, dims + 1));
      case 'stall':
        await hold(server.stallMs, req.signal);
        break;
      case 'slow':
        await hold(server.delayMs, req.signal);
        break;
      case 'ok':
        break;
    }
    // Nobody would read the answer: the client gave up, or the server is going away.
    if (req.signal.aborted || stopping) return new Response(null, { status: 499 });
    embedded.push(...parsed.inputs);
    return Response.json(listBody(parsed.model, parsed.inputs, dims));
  };

  const http = Bun.serve({
    hostname: '127.0.0.1',
    port: options.port ?? 0,
    // Bun's default (10 s) would cut a stalled request short with an empty reply.
    idleTimeout: 0,
    async fetch(req) {
      counters.calls++;
      const res = await answer(req);
      return server.errorDetail && res.status >= 400 && res.status !== 499
        ? withDetail(res, server.errorDetail)
        : res;
    },
  });

  const server: EmbeddingServer = {
    url: `http://127.0.0.1:${http.port}${prefix}`,
    port: http.port!,
    apiKey,
    dimensions: options.dimensions ?? DEFAULT_DIMENSIONS,
    mode: options.mode ?? 'ok',
    retryAfterSeconds: options.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS,
    delayMs: options.delayMs ?? DEFAULT_DELAY_MS,
    stallMs: options.stallMs ?? null,
    errorDetail: options.errorDetail ?? null,
    failNext(count, mode = 'fail500') {
      for (let i = 0; i < count; i++) failQueue.push(mode);
    },
    failFor(text, mode = 'fail503') {
      failInputs.set(text, mode);
    },
    release() {
      const count = held.size;
      for (const done of [...held]) done();
      return count;
    },
    get stalled() {
      return held.size;
    },
    get calls() {
      return counters.calls;
    },
    get unauthorized() {
      return counters.unauthorized;
    },
    get callsByMode() {
      return byMode;
    },
    get requests() {
      return requests;
    },
    get received() {
      return requests.flatMap((r) => r.inputs);
    },
    get embedded() {
      return embedded;
    },
    get inputsEmbedded() {
      return embedded.length;
    },
    timesEmbedded(text) {
      return embedded.filter((e) => e === text).length;
    },
    reset() {
      server.mode = 'ok';
      failQueue.length = 0;
      failInputs.clear();
      counters.calls = 0;
      counters.unauthorized = 0;
      byMode = emptyByMode();
      requests = [];
      embedded = [];
    },
    async stop() {
      stopping = true;
      server.release();
      await http.stop(true);
    },
  };
  return server;
}

interface EmbeddingRequest {
  model: string;
  inputs: string[];
  dimensions: number | undefined;
}

/** The request, or the message of a 400 the way OpenAI words its validation errors. */
function parseBody(text: string): EmbeddingRequest | string {
  let body: { model?: unknown; input?: unknown; dimensions?: unknown };
  try {
    body = JSON.parse(text);
  } catch {
    return 'We could not parse the JSON body of your request.';
  }
  if (typeof body !== 'object' || body === null) return 'The body must be a JSON object.';
  if (typeof body.model !== 'string' || !body.model) return 'you must provide a model parameter';
  const inputs = typeof body.input === 'string' ? [body.input] : body.input;
  if (
    !Array.isArray(inputs) ||
    inputs.length === 0 ||
    !inputs.every((i) => typeof i === 'string')
  ) {
    return "'input' must be a string or a non-empty array of strings";
  }
  const { dimensions } = body;
  if (dimensions !== undefined && !(Number.isInteger(dimensions) && (dimensions as number) > 0)) {
    return "'dimensions' must be a positive integer";
  }
  return { model: body.model, inputs, dimensions: dimensions as number | undefined };
}

function listBody(model: string, inputs: string[], dimensions: number) {
  const tokens = inputs.reduce((sum, input) => sum + tokenCount(input), 0);
  return {
    object: 'list',
    data: inputs.map((input, index) => ({
      object: 'embedding',
      embedding: embedText(input, dimensions),
      index,
    })),
    model,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}

/** OpenAI's error body: {error: {message, type, param, code}}. */
function openAiError(
  status: number,
  message: string,
  type: string,
  param: string | null = null,
  code: string | null = null,
): Response {
  return Response.json({ error: { message, type, param, code } }, { status });
}

/** The same OpenAI error answer with `detail` appended to its message. */
async function withDetail(res: Response, detail: string): Promise<Response> {
  const body = (await res.json()) as { error: { message: string } };
  body.error.message = `${body.error.message} ${detail}`;
  const headers = new Headers(res.headers);
  headers.delete('content-length');
  return Response.json(body, { status: res.status, headers });
}
