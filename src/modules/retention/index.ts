import { Elysia } from 'elysia';
import type { AppDeps } from '../../deps';
import { commonErrors } from '../../lib/schemas';
import { runRetention } from './job';
import { RetentionResult } from './model';

/** POST /v1/admin/retention/run: runs the retention job now, to completion or its time limit. */
export function retentionModule(deps: AppDeps) {
  return new Elysia({ name: 'retention', prefix: '/retention', detail: { tags: ['admin'] } }).post(
    '/run',
    () => runRetention(deps),
    {
      response: { 200: RetentionResult, ...commonErrors },
      detail: {
        summary: 'Apply every tenant’s retention policy now and return the counts',
        description:
          'Archives and purges in batches of RETENTION_BATCH_SIZE; stops between batches after ' +
          'RETENTION_RUN_TIMEOUT_MS (`complete: false`, the next run resumes). Answers ' +
          '`skipped: true` at once when another run is in progress; a failed run reports `error`.',
        security: [{ adminKey: [] }],
      },
    },
  );
}
