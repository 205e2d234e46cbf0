import {
  BrokenCircuitError,
  CircuitBreakerPolicy,
  CircuitState,
  ConsecutiveBreaker,
  ConstantBackoff,
  circuitBreaker,
  DelegateBackoff,
  handleWhen,
  type IRetryBackoffContext,
  retry,
  TaskCancelledError,
  TimeoutStrategy,
  timeout,
  wrap,
} from 'cockatiel';
import type { Config } from '../config';
import { errorSummary } from '../logger';
import { EmbeddingsUnavailableError, type QueryEmbedder } from './types';

/** First retry delay of the background worker; doubles each attempt, with jitter. */
const RETRY_BASE_MS = 250;
/** Longest wait between two retries, including one asked for by Retry-After. */
const RETRY_MAX_MS = 30_000;
/** An interactive search retries once, right away, within its budget. */
const QUERY_RETRY_DELAY_MS = 50;

/** The provider answered with an HTTP error. */
export class EmbeddingHttpError extends Error {
  override name = 'EmbeddingHttpError';
  constructor(
    readonly status: number,
    message: string,
    /** From Retry-After on 429/503. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }

  /** The input itself was refused: retrying cannot help, and the service is healthy. */
  get inputRejected(): boolean {
    return this.status === 400 || this.status === 413 || this.status === 422;
  }
}

/** The provider answered 200 with something that is not the embeddings we asked for. */
export class EmbeddingResponseError extends Error {
  override name = 'EmbeddingResponseError';
}

/** Worth another try: timeouts, connection errors, 429, 5xx and malformed answers. */
function isTransient(err: Error): boolean {
  if (err instanceof BrokenCircuitError) return false;
  if (err instanceof EmbeddingHttpError) return err.status === 429 || err.status >= 500;
  return true;
}

/** Counts against the service's health: everything except a refused input. */
function isServiceFailure(err: Error): boolean {
  return !(err instanceof EmbeddingHttpError && err.inputRejected);
}

export type BreakerState = 'closed' | 'open' | 'half-open';

/** What the client has seen, for health and metrics. */
export interface EmbeddingClientState {
  state: BreakerState;
  lastError?: { message: string; at: string };
  lastLatencyMs?: number;
  lastSuccessAt?: string;
  calls: number;
  failures: number;
}

/**
 * Client of an OpenAI-compatible embeddings API, made resilient with cockatiel: a timeout on
 * every call; retries with exponential backoff and jitter (honouring Retry-After) for transient
 * failures only; and one circuit breaker, shared by the background worker and search, that
 * opens after EMBEDDING_BREAKER_THRESHOLD consecutive failures, fails fast while open and lets
 * one probe through after EMBEDDING_BREAKER_COOLDOWN_MS. Searches get a budget of their own
 * (EMBEDDING_QUERY_BUDGET_MS in all, one quick retry) so they answer promptly.
 */
export class EmbeddingClient implements QueryEmbedder {
  readonly breaker: CircuitBreakerPolicy;
  private readonly workerPolicy;
  private readonly queryPolicy;
  private readonly observed: Omit<EmbeddingClientState, 'state'> = { calls: 0, failures: 0 };
  private openedAt = 0;
  /** Called after every HTTP call, for metrics. */
  onCall?: (outcome: 'ok' | 'error', seconds: number) => void;

  constructor(private readonly config: Config) {
    const perCall = timeout(config.EMBEDDING_TIMEOUT_MS, TimeoutStrategy.Aggressive);
    this.breaker = circuitBreaker(handleWhen(isServiceFailure), {
      halfOpenAfter: config.EMBEDDING_BREAKER_COOLDOWN_MS,
      breaker: new ConsecutiveBreaker(config.EMBEDDING_BREAKER_THRESHOLD),
    });
    this.breaker.onBreak(() => {
      this.openedAt = Date.now();
    });
    const backoff = new DelegateBackoff<IRetryBackoffContext<unknown>>((context) => {
      const exponential = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (context.attempt - 1));
      const jittered = exponential / 2 + (Math.random() * exponential) / 2;
      const err = 'error' in context.result ? context.result.error : undefined;
      const asked = err instanceof EmbeddingHttpError ? (err.retryAfterMs ?? 0) : 0;
      return Math.min(RETRY_MAX_MS, Math.max(jittered, asked));
    });
    this.workerPolicy = wrap(
      retry(handleWhen(isTransient), { maxAttempts: config.EMBEDDING_MAX_RETRIES, backoff }),
      this.breaker,
      perCall,
    );
    const budget = config.EMBEDDING_QUERY_BUDGET_MS;
    this.queryPolicy = wrap(
      timeout(budget, TimeoutStrategy.Aggressive),
      retry(handleWhen(isTransient), {
        maxAttempts: 1,
        backoff: new ConstantBackoff(QUERY_RETRY_DELAY_MS),
      }),
      this.breaker,
      timeout(Math.min(budget, config.EMBEDDING_TIMEOUT_MS), TimeoutStrategy.Aggressive),
    );
  }

  /** Embeds a batch for the background worker (retries, breaker). */
  embedBatch(inputs: string[]): Promise<number[][]> {
    return this.workerPolicy.execute(({ signal }) => this.call(inputs, signal));
  }

  /** Embeds a search query within the interactive budget, or says the service is unavailable. */
  async embedQuery(text: string): Promise<number[]> {
    try {
      const [vector] = await this.queryPolicy.execute(({ signal }) => this.call([text], signal));
      return vector!;
    } catch (err) {
      throw new EmbeddingsUnavailableError(
        `The embedding service is unavailable: ${describe(err)}`,
        this.retryAfterSeconds(),
      );
    }
  }

  state(): EmbeddingClientState {
    return { state: breakerState(this.breaker.state), ...this.observed };
  }

  /** True while the breaker is open. */
  isOpen(): boolean {
    return this.breaker.state === CircuitState.Open;
  }

  /**
   * True while the open breaker is still cooling down: the worker then waits instead of claiming
   * work. Afterwards the breaker moves to half-open only when a call is made, so the next call
   * is the probe.
   */
  isCoolingDown(): boolean {
    return this.isOpen() && Date.now() < this.openedAt + this.config.EMBEDDING_BREAKER_COOLDOWN_MS;
  }

  /** Seconds until the breaker lets a probe through (at least 1). */
  retryAfterSeconds(): number {
    if (!this.isOpen()) return 1;
    const left = this.openedAt + this.config.EMBEDDING_BREAKER_COOLDOWN_MS - Date.now();
    return Math.max(1, Math.ceil(left / 1000));
  }

  private async call(inputs: string[], signal: AbortSignal): Promise<number[][]> {
    const started = performance.now();
    this.observed.calls++;
    try {
      const vectors = await this.request(inputs, signal);
      this.observed.lastLatencyMs = Math.round(performance.now() - started);
      this.observed.lastSuccessAt = new Date().toISOString();
      this.onCall?.('ok', (performance.now() - started) / 1000);
      return vectors;
    } catch (err) {
      this.observed.failures++;
      this.observed.lastLatencyMs = Math.round(performance.now() - started);
      this.observed.lastError = { message: describe(err), at: new Date().toISOString() };
      this.onCall?.('error', (performance.now() - started) / 1000);
      throw err;
    }
  }

  private async request(inputs: string[], signal: AbortSignal): Promise<number[][]> {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (this.config.EMBEDDING_API_KEY) {
      headers.authorization = `Bearer ${this.config.EMBEDDING_API_KEY}`;
    }
    const res = await fetch(`${this.config.EMBEDDING_URL!.replace(/\/+$/, '')}/embeddings`, {
      method: 'POST',
      headers,
      body: JSON.stringify({
        model: this.config.EMBEDDING_MODEL,
        input: inputs,
        dimensions: this.config.EMBEDDING_DIMENSIONS,
      }),
      signal,
    });
    const text = await res.text();
    if (!res.ok) {
      throw new EmbeddingHttpError(
        res.status,
        `HTTP ${res.status}: ${providerMessage(text)}`,
        retryAfterMs(res.headers.get('retry-after')),
      );
    }
    return this.parse(text, inputs.length);
  }

  private parse(text: string, expected: number): number[][] {
    let body: { data?: { embedding?: unknown; index?: unknown }[] };
    try {
      body = JSON.parse(text);
    } catch {
      throw new EmbeddingResponseError('the provider answered with invalid JSON');
    }
    const data = Array.isArray(body?.data) ? body.data : null;
    if (!data || data.length !== expected) {
      throw new EmbeddingResponseError(
        `expected ${expected} embeddings, got ${data ? data.length : 'none'}`,
      );
    }
    const out: number[][] = new Array(expected);
    for (const [position, item] of data.entries()) {
      const index = typeof item?.index === 'number' ? item.index : position;
      const v = item?.embedding;
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) {
        throw new EmbeddingResponseError('an embedding is not an array of numbers');
      }
      if (v.length !== this.config.EMBEDDING_DIMENSIONS) {
        throw new EmbeddingResponseError(
          `the provider returned vectors of dimension ${v.length}, expected ${this.config.EMBEDDING_DIMENSIONS} (EMBEDDING_DIMENSIONS)`,
        );
      }
      if (index < 0 || index >= expected || out[index]) {
        throw new EmbeddingResponseError('embedding indexes do not match the inputs');
      }
      out[index] = v as number[];
    }
    return out;
  }
}

function breakerState(state: CircuitState): BreakerState {
  if (state === CircuitState.Closed) return 'closed';
  if (state === CircuitState.HalfOpen) return 'half-open';
  return 'open';
}

function retryAfterMs(header: string | null): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** The provider's own error message (OpenAI: {error: {message}}), cut short, never the request. */
function providerMessage(text: string): string {
  try {
    const body = JSON.parse(text) as { error?: { message?: unknown } | string };
    const m = typeof body.error === 'string' ? body.error : body.error?.message;
    if (typeof m === 'string') return m.slice(0, 300);
  } catch {
    // not JSON: fall through
  }
  return text.slice(0, 300) || 'no body';
}

/**
 * A short, secret-free description of a failure. A database error is described by class and
 * SQLSTATE only: drizzle's message holds the SQL and its parameters (ids, vectors).
 */
export function describe(err: unknown): string {
  if (err instanceof BrokenCircuitError) return 'circuit open after repeated failures';
  if (err instanceof TaskCancelledError) return 'timed out';
  if (isDatabaseError(err)) return errorSummary(err);
  if (err instanceof Error) return err.message.slice(0, 300);
  return String(err).slice(0, 300);
}

/** Whether a failure came from a query: drizzle and the drivers attach the SQL text to it. */
function isDatabaseError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as Error).cause, depth++) {
    if (typeof e === 'object' && 'query' in e) return true;
  }
  return false;
}
