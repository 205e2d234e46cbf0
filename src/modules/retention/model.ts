import { type Static, t } from 'elysia';

/** What one run did to one tenant. */
export const TenantRetention = t.Object({
  tenant_id: t.String(),
  archived: t.Integer(),
  purged: t.Integer(),
  /** Conversations the purge left without messages, deleted with their last message. */
  conversations_deleted: t.Integer(),
});

/** What a retention run did; the same shape the route answers, the CLI prints and health shows. */
export const RetentionResult = t.Object({
  started_at: t.String(),
  duration_ms: t.Number(),
  archived: t.Integer(),
  purged: t.Integer(),
  conversations_deleted: t.Integer(),
  /** Tenants with a policy that the run went through. */
  tenants_processed: t.Integer(),
  /** Tenants where the run archived or purged something. */
  tenants: t.Array(TenantRetention),
  /** False when the run stopped early (time limit, shutdown or error): the next run resumes. */
  complete: t.Boolean(),
  /** True when another run held the lock; nothing was done. */
  skipped: t.Boolean(),
  reason: t.Optional(t.String()),
  error: t.Optional(t.String()),
});

export type TenantRetention = Static<typeof TenantRetention>;
export type RetentionResult = Static<typeof RetentionResult>;
