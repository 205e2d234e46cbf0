import { type AppError, causes, errors } from '../lib/errors';

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
 * What the client is told about a value PostgreSQL refused (SQLSTATE class 22, data exception),
 * by SQLSTATE. Never the value itself, nor PostgreSQL's own message, which quotes it.
 */
const DATA_EXCEPTION_MESSAGES: Record<string, string> = {
  '22007': 'A time in the request is outside what the database can store',
  '22008': 'A time in the request is outside what the database can store',
  // What JavaScript writes for a year past 9999 ("+010000-…") reads as a bad time zone.
  '22009': 'A time in the request is outside what the database can store',
  '22003': 'A number in the request is out of range',
  '22001': 'A value in the request is too long',
  '22021': 'A string in the request holds characters the database cannot store',
  '22P05': 'A string in the request holds characters the database cannot store',
  '22P02': 'A value in the request is not in the form the database expects',
};
const DATA_EXCEPTION_DEFAULT = 'A value in the request cannot be stored';

/** SQLSTATE 54000: a row, index entry or tsvector larger than PostgreSQL can hold. */
const PROGRAM_LIMIT_EXCEEDED = '54000';

/**
 * Maps a database failure to the API's error deliberately: unreachable or restarting servers to
 * 503 with Retry-After, statement timeouts to 503, constraint races to 409, values PostgreSQL
 * refuses (data exceptions, not-null and check violations) to 422, and values too large for it
 * (class 54, program limit exceeded) to 413 or 422. Validation is meant to catch all of those
 * first; this is the net under it, so no input becomes a 500. Anything else is left to the
 * caller (it becomes a logged 500). Drizzle wraps driver errors, so the cause chain is walked.
 */
export function mapDatabaseError(err: unknown): AppError | null {
  for (const e of causes(err)) {
    const code = String(codeField(e) ?? '');
    if (CONNECTION_CODES.has(code) || code.startsWith('08') || UNAVAILABLE_SQLSTATES.has(code)) {
      return errors.databaseUnavailable();
    }
    if (code === '57014') return errors.databaseTimeout();
    if (code === '23505' || code === '23503' || code === '40001' || code === '40P01') {
      return errors.conflict();
    }
    if (code.length === 5 && code.startsWith('22')) {
      return errors.validationFailed(DATA_EXCEPTION_MESSAGES[code] ?? DATA_EXCEPTION_DEFAULT);
    }
    if (code === '23502' || code === '23514') {
      return errors.validationFailed('A value in the request breaks a rule of the database');
    }
    if (code === PROGRAM_LIMIT_EXCEEDED) {
      return errors.payloadTooLarge(
        'A value in the request is too large for the database to store',
      );
    }
    if (code.length === 5 && code.startsWith('54')) {
      // 54001 (statement too complex, e.g. a nesting too deep for the planner) and the like.
      return errors.validationFailed('The request is too complex for the database');
    }
  }
  return null;
}

/**
 * Whether a mapped database error is one validation should have caught: a value PostgreSQL
 * refused (SQLSTATE class 22, 23502, 23514, class 54). Logged as a warning, without the value,
 * so a gap in validation shows in the log although the client got a 4xx.
 */
export function isRefusedValue(err: unknown): boolean {
  const code = errorCodeOf(err) ?? '';
  return (
    code.length === 5 &&
    (code.startsWith('22') || code.startsWith('54') || code === '23502' || code === '23514')
  );
}

/** The SQLSTATE (or driver code) of a database error, looking through drizzle's wrapping. */
export function errorCodeOf(err: unknown): string | undefined {
  for (const e of causes(err)) {
    const code = codeField(e);
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/** The `code` field of one link of a cause chain (an object, or a thrown string or number). */
function codeField(e: unknown): unknown {
  return (e as { code?: unknown }).code;
}

/** SQLSTATE of a foreign key violation. */
export const FOREIGN_KEY_VIOLATION = '23503';
