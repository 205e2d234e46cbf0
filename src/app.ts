import { openapi } from '@elysiajs/openapi';
import { Elysia } from 'elysia';
import type { AppDeps } from './deps';
import { adminAuth } from './plugins/auth';
import { adminModule } from './modules/admin';
import { conversationsModule } from './modules/conversations';
import { healthModule } from './modules/health';
import { mcpModule } from './modules/mcp';
import { MCP_PATH } from './modules/mcp/path';
import { messagesModule } from './modules/messages';
import { retentionModule } from './modules/retention';
import { ownershipModule } from './modules/ownership';
import { searchModule } from './modules/search';
import { tenantsModule } from './modules/tenants';
import { cors, parseOrigins } from './plugins/cors';
import { errors } from './plugins/errors';
import { jsonBody } from './plugins/json-body';
import { rateLimit, unlimited } from './plugins/rate-limit';
import { requestId } from './plugins/request-id';
import { requestLog } from './plugins/request-log';
import { VERSION } from './version';

/** Builds the HTTP application: cross-cutting plugins first, then the modules under /v1. */
export function createApp(deps: AppDeps) {
  return (
    new Elysia({
      // Validate what was sent; never repair it (normalisation turned "s" into {"0":"s"}).
      normalize: false,
    })
      // Order matters: request ids first (every later error carries one), CORS before the rate
      // limiter (it answers preflights, which are never counted), the limiter before parsing.
      .use(requestId)
      .use(cors(parseOrigins(deps.config.CORS_ORIGINS), deps.config.CORS_MAX_AGE))
      .use(
        deps.config.RATE_LIMIT_ENABLED
          ? rateLimit({ ...deps, perMessageRoute: MCP_PATH })
          : unlimited,
      )
      .use(errors(deps.logger))
      .use(requestLog(deps.logger, deps.config.REQUEST_METRICS ? deps.metrics : null))
      .use(jsonBody(deps.config.MAX_BODY_BYTES, { ownStringChecks: [MCP_PATH] }))
      .use(
        openapi({
          path: '/docs',
          specPath: '/openapi.json',
          documentation: {
            info: {
              title: 'threadstore',
              version: VERSION,
              description: 'Multi-tenant message store for chat and LLM applications',
            },
            components: {
              securitySchemes: {
                tenantKey: { type: 'http', scheme: 'bearer', description: 'Tenant API key (ts_…)' },
                adminKey: { type: 'http', scheme: 'bearer', description: 'ADMIN_API_KEY' },
              },
            },
          },
        }),
      )
      .use(healthModule(deps))
      .use(mcpModule(deps))
      .group('/v1', (v1) =>
        v1
          // Every admin route behind the one admin guard, applied to the modules used after it.
          .group('/admin', (admin) =>
            admin
              .use(adminAuth(deps.config.ADMIN_API_KEY))
              .use(tenantsModule(deps))
              .use(adminModule(deps))
              .use(retentionModule(deps))
              .use(ownershipModule(deps)),
          )
          .use(messagesModule(deps))
          .use(searchModule(deps))
          .use(conversationsModule(deps)),
      )
  );
}

export type App = ReturnType<typeof createApp>;
