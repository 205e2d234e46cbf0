import { Elysia } from 'elysia';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import { requestState } from '../lib/request-state';

/**
 * One JSON line and the request metrics (unless turned off) per request once the response is sent. Only the route pattern is logged (not
 * the raw path or query, which may carry identifiers), and never bodies or headers.
 */
export function requestLog(logger: Logger, metrics: Metrics | null) {
  return new Elysia({ name: 'request-log' }).onAfterResponse(
    { as: 'global' },
    function logRequest({ request, route, set }) {
      const state = requestState(request);
      // A request the transport already answered 503 request_timeout is logged as such.
      const status = state.timedOut ? 503 : typeof set.status === 'number' ? set.status : 200;
      const line = {
        request_id: state.id,
        tenant_id: state.tenantId,
        method: request.method,
        route: route || 'unmatched',
        status,
        duration_ms: Math.round((performance.now() - state.startedAt) * 100) / 100,
        ...(state.tool ? { tool: state.tool } : {}),
      };
      metrics?.observeRequest(line.method, line.route, status, line.duration_ms / 1000);
      if (status >= 500) logger.error(line, 'request');
      else if (status >= 400) logger.warn(line, 'request');
      else logger.info(line, 'request');
    },
  );
}
