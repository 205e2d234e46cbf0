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
  TimeoutStrategy,
  timeout,
  wrap,
} from 'cockatiel';
import type { Config } from '../config';
import {
  classifyFailure,
  EmbeddingDimensionError,
  EmbeddingHttpError,
  EmbeddingResponseError,
  formatFailure,
} from './failures';
import { EmbeddingsUnavailableError, type QueryEmbedder } from './types';

/** First retry delay of the background worker; doubles each attempt, with jitter. */
const RETRY_BASE_MS = 250;
/** Longest wait between two retries, including one asked for by Retry-After. */
const RETRY_MAX_MS = 30_000;
/** An interactive search retries once, right away, within its budget. */
const QUERY_RETRY_DELAY_MS = 50;
/**
 * The control text of checkProvider(): a few tokens that every model embeds. Exported so tests
 * can tell its calls from messages'.
 */
export const PROVIDER_CHECK_TEXT = 'threadstore embedding check';

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
  private readonly singlePolicy;
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
    this.singlePolicy = wrap(this.breaker, perCall);
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

  /**
   * Embeds a batch for the background worker (retries, breaker). `signal` (shutdown) abandons
   * the call in flight and the retries to come: the promise rejects at once.
   */
  embedBatch(inputs: string[], signal?: AbortSignal): Promise<number[][]> {
    return untilAborted(
      this.workerPolicy.execute(({ signal }) => this.call(inputs, signal), signal),
      signal,
    );
  }

  /**
   * Embeds one message with a single call (breaker, timeout, no retry): the worker's attempt of
   * a message that failed before, so that its failure is its own and its retry comes later.
   */
  async embedOne(input: string, signal?: AbortSignal): Promise<number[]> {
    const [vector] = await untilAborted(
      this.singlePolicy.execute(({ signal }) => this.call([input], signal), signal),
      signal,
    );
    return vector!;
  }

  /**
   * Whether the provider embeds a fixed control text right now (one call through the breaker):
   * tells a message's own failure from an outage. Resolves with the error when it does not.
   */
  async checkProvider(signal?: AbortSignal): Promise<{ ok: true } | { ok: false; error: unknown }> {
    try {
      await this.embedOne(PROVIDER_CHECK_TEXT, signal);
      return { ok: true };
    } catch (error) {
      return { ok: false, error };
    }
  }

  /** Embeds a search query within the interactive budget, or says the service is unavailable. */
  async embedQuery(text: string): Promise<number[]> {
    try {
      const [vector] = await this.queryPolicy.execute(({ signal }) => this.call([text], signal));
      return vector!;
    } catch (err) {
      throw new EmbeddingsUnavailableError(
        `The embedding service is unavailable: ${classifyFailure(err).message}`,
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
    if (!res.ok) {
      // The body is dropped unread: a provider's error text may echo a key fragment or input.
      await res.body?.cancel().catch(() => undefined);
      throw new EmbeddingHttpError(res.status, retryAfterMs(res.headers.get('retry-after')));
    }
    return this.parse(await res.text(), inputs.length);
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
        throw new EmbeddingDimensionError(
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

/**
 * Rejects as soon as `signal` aborts. cockatiel's retry sleeps through its backoff (up to
 * RETRY_MAX_MS) without looking at the signal; the abandoned policy run then ends on its own.
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason ?? new DOMException('Aborted', 'AbortError'));
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** A short description of a failure in threadstore's words: never the provider's text. */
export function describe(err: unknown): string {
  return formatFailure(classifyFailure(err));
}
