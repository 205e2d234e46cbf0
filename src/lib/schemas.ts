import { FormatRegistry } from '@sinclair/typebox';
import { t } from 'elysia';
import { ERROR_STATUS } from './errors';

/**
 * Elysia's `t.Integer` reads a query, path or header value as a number when `+value` is an
 * integer, so `limit=0x10`, `1e1`, `+5`, `0b11` and ` 5` passed as 16, 10, 5, 3 and 5. Its string
 * form is checked with the `integer` format, set here to plain decimal digits, for every route.
 */
FormatRegistry.Set('integer', (value) => /^[0-9]+$/.test(value));

/** Every error code and its status, read from the catalogue's table, e.g. "not_found (404)". */
const ERROR_CODES_DOC = Object.entries(ERROR_STATUS)
  .map(([code, status]) => `${code} (${status})`)
  .join(', ');

/** Shared schema pieces every module uses, so errors and ids look the same everywhere. */
export const ErrorResponse = t.Object(
  {
    error: t.Object({
      code: t.String({
        description: `Stable snake_case error code, with its status: ${ERROR_CODES_DOC}`,
      }),
      message: t.String(),
      request_id: t.String(),
      details: t.Optional(t.Unknown()),
    }),
  },
  { description: 'The one error body of the API' },
);

/**
 * The one spelling of a UUID the API accepts: 8-4-4-4-12 hexadecimal digits, in either case.
 * Elysia's `uuid` format also takes a `urn:uuid:` prefix, which PostgreSQL's uuid type rejects
 * (and PostgreSQL takes braces and missing hyphens, which this refuses): the format is set to
 * this pattern too, so every schema that says `format: 'uuid'` agrees with the column type.
 */
export const UUID_PATTERN =
  '^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$';
const uuidText = new RegExp(UUID_PATTERN);
FormatRegistry.Set('uuid', (value) => uuidText.test(value));

/** A UUID the caller sends: validated as one. */
export const Uuid = t.String({ format: 'uuid', pattern: UUID_PATTERN, description: 'A UUID' });
export const IdParams = t.Object({ id: Uuid }, { additionalProperties: false });

// Shapes of what the API returns carry no `format`: the server produces these values itself,
// and checking formats on every row of every response (uuid and date-time regexes) took more
// time than the rest of the response validation for a page of 50 messages.
/** A UUID in a response. */
export const UuidOut = t.String({ description: 'A UUID' });
/** A timestamp in a response. */
export const Timestamp = t.String({
  description: 'RFC 3339 timestamp in UTC with milliseconds',
  examples: ['2026-01-02T03:04:05.678Z'],
});

/**
 * An RFC 3339 time with its offset, sent by the caller. The pattern comes on top of Elysia's
 * `date-time` format, which also takes "2024/01/02" and "Tue Jan 02 2024 …" and reads some of
 * them in the server's local time zone.
 */
export const DateTimeInput = (description: string) =>
  t.String({
    format: 'date-time',
    pattern: '^\\d{4}-\\d{2}-\\d{2}[Tt]\\d{2}:\\d{2}(:\\d{2}(\\.\\d+)?)?([Zz]|[+-]\\d{2}:\\d{2})$',
    description: `${description}; RFC 3339 with an offset, e.g. 2026-01-02T03:04:05Z`,
  });

/** Query-string booleans arrive as text; only the two spellings are accepted. */
export const QueryBoolean = t.Union([t.Literal('true'), t.Literal('false')]);
export const Order = t.Union([t.Literal('asc'), t.Literal('desc')], { default: 'asc' });
export const Cursor = t.String({ minLength: 1, maxLength: 1024, description: 'Opaque cursor' });
export const PageLimit = (max: number, dflt: number) =>
  t.Integer({ minimum: 1, maximum: max, default: dflt, description: `1 to ${max}` });

/** Statuses of the error responses every authenticated route can give. */
type CommonErrorStatus = 400 | 401 | 403 | 413 | 415 | 422 | 429 | 500 | 503;

/**
 * Error responses every authenticated route can give, for the OpenAPI document and typed
 * clients. The annotation keeps the status keys numeric when routes spread this object: the
 * spread of an object literal turns them into strings ("400"), and then Eden Treaty cannot
 * type a route's `error` (it came out as `unknown`).
 */
export const commonErrors: Record<CommonErrorStatus, typeof ErrorResponse> = {
  400: ErrorResponse,
  401: ErrorResponse,
  403: ErrorResponse,
  413: ErrorResponse,
  415: ErrorResponse,
  422: ErrorResponse,
  // Every route is counted against a rate-limit budget.
  429: ErrorResponse,
  500: ErrorResponse,
  503: ErrorResponse,
};
