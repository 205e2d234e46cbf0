import { Type as T } from '@sinclair/typebox';
import { type Static, t } from 'elysia';
import { UuidOut, Cursor, PageLimit, Timestamp } from '../../lib/schemas';

/** Longest grace period a rotated key may keep working: one week. */
export const MAX_GRACE_SECONDS = 7 * 24 * 3600;

const TenantName = t.String({ minLength: 1, maxLength: 200, description: 'Display name' });

/** A per-tenant rate-limit override; null restores the configured default. */
const LimitOverride = t.Union([T.Integer({ minimum: 1, maximum: 10_000_000 }), t.Null()], {
  description: 'Requests per rate-limit window for this tenant; null: the configured default',
});

/** A retention period in days; null: never. */
const RetentionDays = (what: string) =>
  t.Union([T.Integer({ minimum: 1, maximum: 36_500 }), t.Null()], {
    description: `${what} messages older than this many days; null: never`,
  });

export const Tenant = t.Object({
  id: UuidOut,
  name: t.String(),
  disabled: t.Boolean(),
  rate_limit_write_per_minute: t.Nullable(t.Integer()),
  rate_limit_read_per_minute: t.Nullable(t.Integer()),
  archive_after_days: t.Nullable(t.Integer()),
  purge_after_days: t.Nullable(t.Integer()),
  api_key_prefix: t.Nullable(t.String({ description: 'First characters of the current key' })),
  created_at: Timestamp,
  updated_at: Timestamp,
});

/** A tenant as the admin API shows it. */
export type TenantView = Static<typeof Tenant>;

export const CreateTenant = t.Object(
  {
    name: TenantName,
    archive_after_days: t.Optional(RetentionDays('Archive')),
    purge_after_days: t.Optional(RetentionDays('Delete')),
  },
  { additionalProperties: false },
);

export const CreatedTenant = t.Object({
  id: UuidOut,
  name: t.String(),
  api_key: t.String({ description: 'Shown once; only its hash is stored' }),
  api_key_prefix: t.String(),
  archive_after_days: t.Nullable(t.Integer()),
  purge_after_days: t.Nullable(t.Integer()),
  created_at: Timestamp,
});

export const UpdateTenant = t.Object(
  {
    name: t.Optional(TenantName),
    disabled: t.Optional(t.Boolean()),
    rate_limit_write_per_minute: t.Optional(LimitOverride),
    rate_limit_read_per_minute: t.Optional(LimitOverride),
    archive_after_days: t.Optional(RetentionDays('Archive')),
    purge_after_days: t.Optional(RetentionDays('Delete')),
  },
  { additionalProperties: false, minProperties: 1 },
);

/**
 * The body is optional. Spelled as a union with undefined, and with TypeBox's own Integer:
 * Elysia skips validation of a `t.Optional` body and its `t.Integer` accepts numeric strings,
 * and wrong types must be refused, not coerced.
 */
export const RotateKey = t.Union([
  t.Object(
    {
      grace_seconds: t.Optional(
        T.Integer({
          minimum: 0,
          maximum: MAX_GRACE_SECONDS,
          description: 'How long the previous key keeps working (default 0: revoked at once)',
        }),
      ),
    },
    { additionalProperties: false },
  ),
  t.Undefined(),
]);

export const RotatedKey = t.Object({
  api_key: t.String({ description: 'Shown once; only its hash is stored' }),
  api_key_prefix: t.String(),
  previous_key_expires_at: t.Nullable(Timestamp),
});

export const TenantListQuery = t.Object(
  { limit: t.Optional(PageLimit(200, 50)), cursor: t.Optional(Cursor) },
  { additionalProperties: false },
);

export const TenantPage = t.Object({
  tenants: t.Array(Tenant),
  next_cursor: t.Nullable(t.String()),
});
