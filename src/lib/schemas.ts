import { t } from 'elysia';

/** Shared schema pieces every module uses, so errors and ids look the same everywhere. */
export const ErrorResponse = t.Object(
  {
    error: t.Object({
      code: t.String({ description: 'Stable snake_case error code' }),
      message: t.String(),
      request_id: t.String(),
      details: t.Optional(t.Unknown()),
    }),
  },
  { description: 'The one error body of the API' },
);

export const Uuid = t.String({ format: 'uuid', description: 'A UUID' });
export const IdParams = t.Object({ id: Uuid }, { additionalProperties: false });
export const Timestamp = t.String({ format: 'date-time', description: 'RFC 3339 timestamp' });

/** Query-string booleans arrive as text; only the two spellings are accepted. */
export const QueryBoolean = t.Union([t.Literal('true'), t.Literal('false')]);
export const Order = t.Union([t.Literal('asc'), t.Literal('desc')], { default: 'asc' });
export const Cursor = t.String({ minLength: 1, maxLength: 1024, description: 'Opaque cursor' });
export const PageLimit = (max: number, dflt: number) =>
  t.Integer({ minimum: 1, maximum: max, default: dflt, description: `1 to ${max}` });

/** Error responses every authenticated route can give, for the OpenAPI document. */
export const commonErrors = {
  400: ErrorResponse,
  401: ErrorResponse,
  403: ErrorResponse,
  413: ErrorResponse,
  415: ErrorResponse,
  422: ErrorResponse,
  500: ErrorResponse,
  503: ErrorResponse,
} as const;
