/** Stable, documented error codes of the API. */
export type ErrorCode =
  | 'validation_failed'
  | 'malformed_json'
  | 'not_found'
  | 'unauthorized'
  | 'forbidden'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'method_not_allowed'
  | 'conflict'
  | 'invalid_cursor'
  | 'database_unavailable'
  | 'database_timeout'
  | 'not_ready'
  | 'database_busy'
  | 'rate_limited'
  | 'rate_limit_unavailable'
  | 'concurrency_limited'
  | 'request_timeout'
  | 'idempotency_conflict'
  | 'semantic_search_disabled'
  | 'embeddings_unavailable'
  | 'internal_error';

/** The one error type handlers throw; the error plugin turns it into the one error body. */
export class AppError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    /** Extra response headers, e.g. Retry-After. */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = 'AppError';
  }
}

export const notFound = (what: string) => new AppError(404, 'not_found', `${what} not found`);

export const validationFailed = (message: string, details?: unknown) =>
  new AppError(422, 'validation_failed', message, details);

export const payloadTooLarge = (message: string, details?: unknown) =>
  new AppError(413, 'payload_too_large', message, details);

/** Seconds a client should wait before retrying when the database connections are all busy. */
const BUSY_RETRY_AFTER_SECONDS = 1;

/** 503: every database connection stayed busy for the whole acquire timeout, or the queue is full. */
export const databaseBusy = () =>
  new AppError(
    503,
    'database_busy',
    'Every database connection is busy; retry shortly',
    undefined,
    {
      'retry-after': String(BUSY_RETRY_AFTER_SECONDS),
    },
  );

/**
 * 429: the queue for database connections is full, other tenants are waiting too, and this
 * tenant has the most requests waiting: it is over its share of the pool.
 */
export const concurrencyLimited = () =>
  new AppError(
    429,
    'concurrency_limited',
    "Too many of this tenant's requests are waiting for the database; retry shortly",
    { retry_after_seconds: BUSY_RETRY_AFTER_SECONDS },
    { 'retry-after': String(BUSY_RETRY_AFTER_SECONDS) },
  );

/**
 * 503: the request ran past its time limit. The transport has already answered it; this is
 * what its remaining work throws so that nothing more of it runs.
 */
export const requestTimedOut = () =>
  new AppError(503, 'request_timeout', 'The request did not complete in time', undefined, {
    'retry-after': '1',
  });
