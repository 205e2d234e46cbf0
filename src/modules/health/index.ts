import { Elysia, t } from 'elysia';
import { migrationsApplied } from '../../db/migrate';
import type { AppDeps } from '../../deps';
import { AppError } from '../../lib/errors';
import { ErrorResponse } from '../../lib/schemas';

/** Readiness waits at most this long for the database before answering 503. */
const READY_TIMEOUT_MS = 2000;

/** Probes for load balancers and orchestrators; unauthenticated, outside /v1. */
export function healthModule({ database }: AppDeps) {
  return new Elysia({ name: 'health', detail: { tags: ['probes'] } })
    .get('/livez', () => ({ status: 'ok' as const }), {
      response: { 200: t.Object({ status: t.Literal('ok') }) },
      detail: { summary: 'The process is up' },
    })
    .get(
      '/readyz',
      async () => {
        const ready = await withTimeout(
          (async () => {
            await database.ping();
            return migrationsApplied(database.db);
          })(),
          READY_TIMEOUT_MS,
        ).catch(() => null);
        if (ready === null) {
          throw new AppError(
            503,
            'database_unavailable',
            'The database is not answering',
            undefined,
            {
              'retry-after': '2',
            },
          );
        }
        if (!ready) {
          throw new AppError(503, 'not_ready', 'Database migrations are not applied', undefined, {
            'retry-after': '5',
          });
        }
        return { status: 'ready' as const };
      },
      {
        response: { 200: t.Object({ status: t.Literal('ready') }), 503: ErrorResponse },
        detail: { summary: 'The database answers and migrations are applied' },
      },
    );
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timeout')), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}
