import { Elysia, ParseError, type Static, ValidationError } from 'elysia';
import { isRefusedValue, mapDatabaseError } from '../db/errors';
// The catalogue is `errors` everywhere else; here that name is the plugin's.
import { AppError, causes, type ErrorCode, errors as appErrors } from '../lib/errors';
import { ErrorResponse } from '../lib/schemas';
import type { Logger } from '../logger';
import { type RequestState, requestState } from '../lib/request-state';

/**
 * 5xx codes whose source logs them itself: rate-limited, as one line per request during an
 * outage would flood the log, or once per request (the transport logs each timeout; what the
 * timed-out work throws afterwards is the same event again).
 */
const LOGGED_AT_SOURCE = new Set<ErrorCode>(['rate_limit_unavailable', 'request_timeout']);

/** The one error body of the API. */
export type ErrorBody = Static<typeof ErrorResponse>;

/**
 * Turns every error, from validation to unknown routes to unexpected exceptions, into the one
 * JSON error body. Unexpected errors are logged with their stack and shown only as
 * `internal_error`.
 */
export function errors(logger: Logger) {
  return new Elysia({ name: 'errors' }).onError(
    { as: 'global' },
    function renderError({ code, error, request, set }) {
      const state = requestState(request);
      const { error: final, body } = describeError(code, error, state, logger);
      set.status = final.status;
      const headers: Record<string, string> = {
        'content-type': 'application/json; charset=utf-8',
        'x-request-id': state.id,
        ...final.headers,
      };
      for (const [k, v] of Object.entries(set.headers)) {
        if (typeof v === 'string' && !(k in headers)) headers[k] = v;
      }
      return new Response(JSON.stringify(body), { status: final.status, headers });
    },
  );
}

/**
 * A thrown value as the API shows it, logged as it deserves: an unexpected error with its stack
 * (and shown only as `internal_error`), a 5xx as a warning unless its source logs it. For the
 * HTTP error handler and for MCP tool errors alike.
 */
export function describeError(
  code: unknown,
  error: unknown,
  state: RequestState,
  logger: Logger,
): { error: AppError; body: ErrorBody } {
  const appError = toAppError(code, error);
  if (!appError) {
    logger.error(
      { request_id: state.id, tenant_id: state.tenantId, tool: state.tool, err: error },
      'unhandled error',
    );
  } else if (appError.status < 500 && isRefusedValue(error)) {
    // The client gets a 4xx, but validation let through something PostgreSQL refused: worth
    // a warning (class and SQLSTATE only, as every logged error), so the gap can be closed.
    logger.warn(
      { request_id: state.id, tool: state.tool, code: appError.code, err: error },
      'the database refused a value that passed validation',
    );
  } else if (appError.status >= 500 && !LOGGED_AT_SOURCE.has(appError.code)) {
    logger.warn(
      { request_id: state.id, tool: state.tool, code: appError.code, err: causeOf(error) },
      appError.message,
    );
  }
  const final = appError ?? appErrors.internal();
  const body: ErrorBody = {
    error: { code: final.code, message: final.message, request_id: state.id },
  };
  if (final.details !== undefined) body.error.details = final.details;
  return { error: final, body };
}

/** Maps a thrown value to an AppError, or null when it is unexpected (a bug: a 500). */
export function toAppError(code: unknown, error: unknown): AppError | null {
  // Drizzle wraps what the driver layer throws (the pool gate's database_busy among it).
  for (const e of causes(error)) {
    if (e instanceof AppError) return e;
  }
  if (error instanceof ParseError || code === 'PARSE') {
    // A body parser's own AppError (its cause) was returned by the walk above.
    return appErrors.malformedJson();
  }
  if (error instanceof ValidationError || code === 'VALIDATION') {
    const v = error as ValidationError;
    // A response that fails its own schema is a server bug, not the caller's fault.
    if (v.type === 'response') return null;
    // Elysia reports coerced query fields as 'property'.
    const where = v.type === 'property' ? 'query' : v.type;
    const details = v.all.slice(0, 20).map((e) => ({
      in: where,
      path: 'path' in e ? e.path : '',
      message: 'summary' in e && e.summary ? e.summary : e.message,
    }));
    return appErrors.validationFailed(`Invalid request ${where}`, details);
  }
  if (code === 'NOT_FOUND') return appErrors.notFound('No such route');
  if (code === 'INVALID_COOKIE_SIGNATURE') return appErrors.invalidCookieSignature();
  return mapDatabaseError(error);
}

/** What a 5xx is logged with: the error's first cause (the failure underneath), or itself. */
function causeOf(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const [, cause] = causes(error, 2);
  return cause || error;
}
