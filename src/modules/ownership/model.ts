import { t } from 'elysia';

/** The media type of an export: one JSON document per line. */
export const NDJSON = 'application/x-ndjson';

export const DeletedTenant = t.Object({
  deleted: t.Object(
    {
      messages: t.Integer(),
      conversations: t.Integer(),
      idempotency_keys: t.Integer(),
      api_keys: t.Integer(),
    },
    { description: 'Rows this call removed (a repeat after an interruption counts the rest)' },
  ),
});

export const EXPORT_DESCRIPTION = `Streams every row the tenant owns as NDJSON (\`${NDJSON}\`), in constant memory whatever its size, in this order:

- one \`{"type":"tenant", ...}\` line (the tenant as \`GET /v1/admin/tenants/:id\` shows it, without its key prefix);
- \`{"type":"conversation","id","created_at"}\` lines, by id;
- \`{"type":"message", ...}\` lines (messages as the API shows them, archived ones included), by \`created_at\` then id;
- a last line \`{"type":"end","conversations":N,"messages":M}\`. An export without it was cut short.

The export is not a snapshot: rows written or deleted while it runs may or may not appear. The request timeout does not apply once the first line is sent.`;

export const DELETE_DESCRIPTION = `Deletes the tenant and every row it owns. Its API keys stop working at once (other instances are told by a NOTIFY sent on commit and refuse them within a second): the tenant is disabled and its keys deleted first, then messages, conversations and idempotency keys are deleted in batches of 5,000 rows, each a short transaction of its own, and the tenant row last. Answers 200 with the rows removed. If the call is interrupted (or answered 503 request_timeout, which stops the deletion between two batches), the tenant stays, disabled; calling DELETE again finishes the job. 404 once the tenant is gone.`;
