import type { Server } from 'bun';
import type { App } from './app';
import type { AppDeps } from './deps';
import { errors } from './lib/errors';
import { routePathOf } from './lib/path';
import type { ErrorBody } from './plugins/errors';
import { requestState, withRequestState } from './lib/request-state';

/** The part of Bun's server the handler uses (tests pass their own). */
export type RequestIpSource = Pick<Server<unknown>, 'requestIP'>;

/**
 * The HTTP entry point around the Elysia app: records the socket address (the only client
 * address that cannot be spoofed) and bounds every request by REQUEST_TIMEOUT_MS. A request
 * still running then gets 503 `request_timeout`, and its database work stops with it: the
 * request's signal aborts, the pool gate cancels its statements in flight and refuses its next
 * ones (a loop of statements stops between two), and its transaction rolls back. The
 * statement timeout on each connection (DB_STATEMENT_TIMEOUT_MS) stays as a backstop.
 */
export function createFetchHandler(app: App, { config, logger, metrics }: AppDeps) {
  /** Long admin operations have limits of their own instead of REQUEST_TIMEOUT_MS. */
  const longRunning: Record<string, number> = {
    'POST /v1/admin/retention/run': config.RETENTION_RUN_TIMEOUT_MS,
    'POST /v1/admin/embeddings/reindex': config.RETENTION_RUN_TIMEOUT_MS,
  };
  return async function handleRequest(request: Request, server: RequestIpSource | null) {
    const timeoutMs =
      (request.method === 'POST' && longRunning[`POST ${routePathOf(request.url)}`]) ||
      config.REQUEST_TIMEOUT_MS;
    const state = requestState(request);
    if (server) state.socketIp = () => server.requestIP(request)?.address;
    const deadline = new AbortController();
    state.signal = deadline.signal;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<Response>((resolve) => {
      timer = setTimeout(() => {
        state.timedOut = true;
        metrics.requestTimedOut();
        logger.warn(
          {
            request_id: state.id,
            tenant_id: state.tenantId,
            method: request.method,
            timeout_ms: timeoutMs,
          },
          'request timed out',
        );
        resolve(timeoutResponse(state.id, state.headers, timeoutMs));
        // After the answer is settled: what the abort makes the handler throw is never shown.
        deadline.abort();
      }, timeoutMs);
    });
    try {
      return await Promise.race([withRequestState(state, () => app.fetch(request)), timedOut]);
    } finally {
      clearTimeout(timer);
    }
  };
}

function timeoutResponse(
  requestId: string,
  setHeaders: Record<string, unknown> | undefined,
  ms: number,
) {
  const timedOut = errors.requestTimedOut({
    message: `The request did not complete within ${ms} ms`,
  });
  const body: ErrorBody = {
    error: { code: timedOut.code, message: timedOut.message, request_id: requestId },
  };
  const headers = new Headers();
  // Keep what the plugins already decided (request id, CORS, rate-limit headers).
  for (const [k, v] of Object.entries(setHeaders ?? {}))
    if (typeof v === 'string') headers.set(k, v);
  headers.set('content-type', 'application/json; charset=utf-8');
  for (const [k, v] of Object.entries(timedOut.headers ?? {})) headers.set(k, v);
  headers.set('x-request-id', requestId);
  return new Response(JSON.stringify(body), { status: timedOut.status, headers });
}
