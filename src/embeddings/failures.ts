import { BrokenCircuitError, TaskCancelledError } from 'cockatiel';

/**
 * Why a message is not embedded (yet), as tenants see it in `embedding_error`. The text after
 * the category is written by threadstore: a provider's own error text can carry fragments of
 * keys, account names or the input, so it is never stored, shown or logged.
 */
export const embeddingFailureCategories = [
  /** Connection refused or reset, HTTP 429 or 5xx, or the circuit breaker is open. */
  'provider_unavailable',
  /** HTTP 4xx other than 429: the input itself (400, 413, 422) or the credentials (401, 403). */
  'provider_rejected',
  /** HTTP 200 with something that is not the embeddings asked for. */
  'invalid_response',
  /** No answer within EMBEDDING_TIMEOUT_MS. */
  'timeout',
  /** Vectors of another length than EMBEDDING_DIMENSIONS. */
  'dimension_mismatch',
  /** The message failed on its own EMBEDDING_MAX_ATTEMPTS times; it stays `failed`. */
  'attempts_exhausted',
] as const;
export type EmbeddingFailureCategory = (typeof embeddingFailureCategories)[number];

/** A failure as threadstore describes it; `embedding_error` is `${category}: ${message}`. */
export interface EmbeddingFailure {
  category: EmbeddingFailureCategory;
  message: string;
}

/** The provider answered with an HTTP error. Only the status is kept, never the body. */
export class EmbeddingHttpError extends Error {
  override name = 'EmbeddingHttpError';
  constructor(
    readonly status: number,
    /** From Retry-After on 429/503. */
    readonly retryAfterMs?: number,
  ) {
    super(`HTTP ${status}`);
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

/** The provider answered vectors of another dimension than EMBEDDING_DIMENSIONS. */
export class EmbeddingDimensionError extends EmbeddingResponseError {
  override name = 'EmbeddingDimensionError';
}

/** True for the provider's refusal of an input: that message fails at once, others go on. */
export function isInputRejected(err: unknown): boolean {
  return err instanceof EmbeddingHttpError && err.inputRejected;
}

/** Puts any error of an embedding call into a category, with threadstore's own words. */
export function classifyFailure(err: unknown): EmbeddingFailure {
  if (err instanceof BrokenCircuitError) {
    return {
      category: 'provider_unavailable',
      message: 'embedding is paused after repeated provider failures (circuit open)',
    };
  }
  if (err instanceof TaskCancelledError) {
    return { category: 'timeout', message: 'the embedding provider did not answer in time' };
  }
  if (err instanceof EmbeddingHttpError) {
    const status = err.status;
    if (status === 429) {
      return {
        category: 'provider_unavailable',
        message: 'the embedding provider is rate limiting (HTTP 429)',
      };
    }
    if (status >= 500) {
      return {
        category: 'provider_unavailable',
        message: `the embedding provider answered HTTP ${status}`,
      };
    }
    if (err.inputRejected) {
      return {
        category: 'provider_rejected',
        message: `the embedding provider refused this message (HTTP ${status})`,
      };
    }
    if (status === 401 || status === 403) {
      return {
        category: 'provider_rejected',
        message: `the embedding provider refused the credentials (HTTP ${status})`,
      };
    }
    return {
      category: 'provider_rejected',
      message: `the embedding provider refused the request (HTTP ${status})`,
    };
  }
  if (err instanceof EmbeddingDimensionError) {
    return { category: 'dimension_mismatch', message: err.message };
  }
  if (err instanceof EmbeddingResponseError) {
    return { category: 'invalid_response', message: err.message };
  }
  // fetch's own errors (refused, reset, DNS) may name the URL, which can hold credentials.
  return {
    category: 'provider_unavailable',
    message: 'the embedding provider could not be reached',
  };
}

/** The text stored in `embedding_error`, shown to tenants and in health. */
export function formatFailure(failure: EmbeddingFailure): string {
  return `${failure.category}: ${failure.message}`;
}

/** The final failure of a message that failed on its own `attempts` times. */
export function attemptsExhausted(attempts: number, last: EmbeddingFailure): EmbeddingFailure {
  return {
    category: 'attempts_exhausted',
    message: `gave up after ${attempts} failed attempts; the last was ${last.category} (${last.message})`,
  };
}
