import { AppError } from '../lib/errors';

/** Seconds a client should wait before retrying when the database is unavailable. */
const RETRY_AFTER_SECONDS = '2';

/** Driver error codes (postgres.js and Node sockets) that mean "no usable connection". */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'CONNECT_TIMEOUT',
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
]);

/** SQLSTATEs that mean the server is going away or refusing connections. */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '53400']);

/**
 * Maps a database failure to the API's error deliberately: unreachable or restarting servers to
 * 503 with Retry-After, statement timeouts to 503, constraint races to 409. Anything else is left
 * to the caller (it becomes a logged 500). Drizzle wraps driver errors, so the cause chain is walked.
 */
export function mapDatabaseError(err: unknown): AppError | null {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as Error).cause, depth++) {
    const code = String((e as { code?: unknown }).code ?? '');
    if (CONNECTION_CODES.has(code) || code.startsWith('08') || UNAVAILABLE_SQLSTATES.has(code)) {
      return new AppError(
        503,
        'database_unavailable',
        'The database is unavailable; retry shortly',
        undefined,
        {
          'retry-after': RETRY_AFTER_SECONDS,
        },
      );
    }
    if (code === '57014') {
      return new AppError(
        503,
        'database_timeout',
        'The database did not answer in time',
        undefined,
        {
          'retry-after': RETRY_AFTER_SECONDS,
        },
      );
    }
    if (code === '23505' || code === '23503' || code === '40001' || code === '40P01') {
      return new AppError(
        409,
        'conflict',
        'The request conflicts with a concurrent change; retry it',
      );
    }
  }
  return null;
}

/** The SQLSTATE (or driver code) of a database error, looking through drizzle's wrapping. */
export function errorCodeOf(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as Error).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/** SQLSTATE of a foreign key violation. */
export const FOREIGN_KEY_VIOLATION = '23503';
