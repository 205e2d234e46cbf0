/**
 * The status of each stable, documented error code of the API: the one table the catalogue
 * below and the OpenAPI error docs (`ErrorResponse` in lib/schemas.ts) read.
 */
export const ERROR_STATUS = {
  malformed_json: 400,
  invalid_cursor: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  idempotency_conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  validation_failed: 422,
  semantic_search_disabled: 422,
  rate_limited: 429,
  concurrency_limited: 429,
  internal_error: 500,
  database_unavailable: 503,
  database_timeout: 503,
  database_busy: 503,
  not_ready: 503,
  rate_limit_unavailable: 503,
  request_timeout: 503,
  embeddings_unavailable: 503,
} as const satisfies Record<string, number>;

/** Stable, documented error codes of the API. */
export type ErrorCode = keyof typeof ERROR_STATUS;

/**
 * Seconds a client is told to wait (Retry-After) per error code, where the wait is fixed. A
 * rate limit's wait is its window's remaining time and an embedding outage's the breaker's
 * cool-down: those come with the error.
 */
export const RETRY_AFTER_SECONDS = {
  database_unavailable: 2,
  database_timeout: 2,
  database_busy: 1,
  concurrency_limited: 1,
  not_ready: 5,
  rate_limit_unavailable: 1,
  request_timeout: 1,
} as const satisfies Partial<Record<ErrorCode, number>>;

/** What an AppError carries besides its status, code and message. */
export interface AppErrorOptions {
  /** Shown to the client as `error.details`. */
  details?: unknown;
  /** Seconds, sent as the Retry-After header. */
  retryAfter?: number;
  /** Other response headers, e.g. WWW-Authenticate or Allow. */
  headers?: Record<string, string>;
  /** What went wrong underneath; the error plugin logs it for a 5xx. */
  cause?: unknown;
}

/** The one error type handlers throw; the error plugin turns it into the one error body. */
export class AppError extends Error {
  /** Shown to the client as `error.details`. */
  readonly details?: unknown;
  /** Extra response headers, e.g. Retry-After. */
  readonly headers?: Record<string, string>;

  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    options: AppErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.details = options.details;
    const headers = { ...options.headers };
    if (options.retryAfter !== undefined) headers['retry-after'] = String(options.retryAfter);
    if (Object.keys(headers).length > 0) this.headers = headers;
  }
}

/** An AppError with its code's status from the table. */
const make = (code: ErrorCode, message: string, options?: AppErrorOptions) =>
  new AppError(ERROR_STATUS[code], code, message, options);

/** What a client is told after a conflict it may retry. */
const CONFLICT_MESSAGE = 'The request conflicts with a concurrent change; retry it';

/**
 * The catalogue of the API's errors: each one's code, status and Retry-After in one place, so
 * call sites name the error and never spell a status or a header.
 */
export const errors = {
  /** 400: the body is not JSON (or not UTF-8). */
  malformedJson: (message = 'The request body is not valid JSON') =>
    make('malformed_json', message),
  /** 400: a cursor that was not issued for this tenant and listing, or was edited. */
  invalidCursor: () =>
    make('invalid_cursor', 'The cursor is invalid, expired or belongs to another query'),
  /**
   * 400 `validation_failed`: Elysia's signed-cookie check. The one code with a status other
   * than its table's: kept as Elysia's own 400 (no route of the API signs cookies).
   */
  invalidCookieSignature: () => new AppError(400, 'validation_failed', 'Invalid cookie signature'),
  /** 401 with `WWW-Authenticate: Bearer`. */
  unauthorized: (message: string) =>
    make('unauthorized', message, { headers: { 'www-authenticate': 'Bearer' } }),
  /** 403: the key is valid but its tenant may not act. */
  forbidden: (message: string) => make('forbidden', message),
  /** 404; `details` for what may be asked for instead. */
  notFound: (message: string, details?: unknown) => make('not_found', message, { details }),
  /** 405 with the methods the route takes, as `Allow`. */
  methodNotAllowed: (message: string, allow: string) =>
    make('method_not_allowed', message, { headers: { allow } }),
  /** 409: a concurrent change won (a constraint race, a serialization failure). */
  conflict: () => make('conflict', CONFLICT_MESSAGE),
  /** 409: an Idempotency-Key reused with a different request. */
  idempotencyConflict: () =>
    make('idempotency_conflict', 'This Idempotency-Key was already used with a different request'),
  /** 413. */
  payloadTooLarge: (message: string, details?: unknown) =>
    make('payload_too_large', message, { details }),
  /** 415: a body that is not `application/json`. */
  unsupportedMediaType: () =>
    make('unsupported_media_type', 'Request bodies must be sent as Content-Type: application/json'),
  /** 422. */
  validationFailed: (message: string, details?: unknown) =>
    make('validation_failed', message, { details }),
  /** 422: semantic search asked for where it is not configured. */
  semanticSearchDisabled: (message: string) => make('semantic_search_disabled', message),
  /**
   * 429: over a rate-limit budget. Retry-After is the window's remaining time, at least 1 s
   * (`details.retry_after_seconds` may say 0 at the window's very end).
   */
  rateLimited: (
    message: string,
    details: { budget: string; limit: number; retry_after_seconds: number },
  ) =>
    make('rate_limited', message, {
      details,
      retryAfter: Math.max(details.retry_after_seconds, 1),
    }),
  /**
   * 429: the queue for database connections is full, other tenants are waiting too, and this
   * tenant has the most requests waiting: it is over its share of the pool.
   */
  concurrencyLimited: () =>
    make(
      'concurrency_limited',
      "Too many of this tenant's requests are waiting for the database; retry shortly",
      {
        details: { retry_after_seconds: RETRY_AFTER_SECONDS.concurrency_limited },
        retryAfter: RETRY_AFTER_SECONDS.concurrency_limited,
      },
    ),
  /** 500 the caller is shown; a wiring bug, not the caller's fault. */
  internal: (message = 'Internal server error') => make('internal_error', message),
  /** 503: no usable database connection (unreachable, restarting, refusing). */
  databaseUnavailable: (message = 'The database is unavailable; retry shortly') =>
    make('database_unavailable', message, { retryAfter: RETRY_AFTER_SECONDS.database_unavailable }),
  /** 503: a statement ran past its timeout. */
  databaseTimeout: () =>
    make('database_timeout', 'The database did not answer in time', {
      retryAfter: RETRY_AFTER_SECONDS.database_timeout,
    }),
  /** 503: every database connection stayed busy for the whole acquire timeout, or the queue is full. */
  databaseBusy: () =>
    make('database_busy', 'Every database connection is busy; retry shortly', {
      retryAfter: RETRY_AFTER_SECONDS.database_busy,
    }),
  /** 503 from readiness: stopping, or migrations pending. */
  notReady: (message: string) =>
    make('not_ready', message, { retryAfter: RETRY_AFTER_SECONDS.not_ready }),
  /** 503: the rate-limit counters fail and the policy is to deny. */
  rateLimitUnavailable: () =>
    make('rate_limit_unavailable', 'Rate limits cannot be checked right now; retry shortly', {
      retryAfter: RETRY_AFTER_SECONDS.rate_limit_unavailable,
    }),
  /**
   * 503: the request ran past its time limit. The transport answers it with this (and its own
   * message); what its remaining work throws is this too, so that nothing more of it runs.
   */
  requestTimedOut: ({
    message = 'The request did not complete in time',
    cause,
  }: { message?: string; cause?: unknown } = {}) =>
    make('request_timeout', message, { retryAfter: RETRY_AFTER_SECONDS.request_timeout, cause }),
  /** 503: the embedding service is down; retry after the breaker's cool-down (whole seconds, at least 1). */
  embeddingsUnavailable: (retryAfterSeconds: number, cause: unknown) => {
    const retryAfter = Math.max(1, Math.ceil(retryAfterSeconds));
    return make(
      'embeddings_unavailable',
      `The embedding service is unavailable; retry in ${retryAfter} s, or search with mode "fulltext"`,
      { retryAfter, cause },
    );
  },
};

/** Links of a cause chain looked at, the error itself included: drizzle → postgres.js is two. */
const MAX_CAUSE_LINKS = 5;

/**
 * An error and its causes, outermost first: drizzle wraps what the driver throws, and the
 * driver layer wraps what the pool gate throws. Ends at a missing (`undefined` or `null`) cause
 * or after `limit` links, so a cycle cannot loop.
 */
export function* causes(err: unknown, limit: number = MAX_CAUSE_LINKS): Generator<unknown> {
  let e = err;
  for (let links = 0; links < limit && e !== undefined && e !== null; links++) {
    yield e;
    e =
      typeof e === 'object' || typeof e === 'function'
        ? (e as { cause?: unknown }).cause
        : undefined;
  }
}
