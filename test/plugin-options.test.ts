import { describe, expect, test } from 'bun:test';
import { Elysia } from 'elysia';
import { errors } from '../src/plugins/errors';
import { jsonBody } from '../src/plugins/json-body';
import { pricingOf } from '../src/plugins/rate-limit';
import { requestId } from '../src/plugins/request-id';
import { sharedApp } from './support/app';

// The plugins know nothing of the MCP endpoint: app.ts names it in their options.
describe('the body parser checks strings on every route but those named to check their own', () => {
  const post = (app: { handle(r: Request): Promise<Response> }, path: string, body: string) =>
    app.handle(
      new Request(`http://localhost${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      }),
    );
  const nul = JSON.stringify({ s: 'a\u0000b' });
  const deep = '['.repeat(40) + ']'.repeat(40);

  test('without options, a NUL is 422 on any path, /mcp included', async () => {
    const t = await sharedApp();
    const app = new Elysia({ normalize: false })
      .use(requestId)
      .use(errors(t.deps.logger))
      .use(jsonBody(1000))
      .post('/mcp', () => 'ran');
    expect((await post(app, '/mcp', nul)).status).toBe(422);
  });

  test('a route named in ownStringChecks gets the NUL, and still has its nesting checked', async () => {
    const t = await sharedApp();
    const app = new Elysia({ normalize: false })
      .use(requestId)
      .use(errors(t.deps.logger))
      .use(jsonBody(1000, { ownStringChecks: ['/mcp'] }))
      .post('/mcp', () => 'ran')
      .post('/other', () => 'ran');
    const own = await post(app, '/mcp', nul);
    expect(own.status).toBe(200);
    expect(await own.text()).toBe('ran');
    expect((await post(app, '/mcp', deep)).status).toBe(422);
    expect((await post(app, '/other', nul)).status).toBe(422);
  });
});

describe('the rate limiter counts per message only the route it is told', () => {
  test('POST to perMessageRoute is per-message; without the option it is a write', () => {
    expect(pricingOf('POST', '/mcp', '/mcp')).toBe('per-message');
    expect(pricingOf('GET', '/mcp', '/mcp')).toBe('read');
    expect(pricingOf('POST', '/mcp')).toBe('write');
    expect(pricingOf('POST', '/v1/messages', '/mcp')).toBe('write');
    expect(pricingOf('GET', '/livez', '/mcp')).toBe('free');
  });
});
