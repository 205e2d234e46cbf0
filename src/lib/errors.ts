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
