import { afterAll, describe, expect, test } from 'bun:test';
import {
  ADMIN_KEY,
  buildTestApp,
  sharedApp,
  type TestApp,
  expectUnauthorized,
} from './support/app';

const t = await sharedApp();
const TOKEN = 'metrics-token-0123456789';
const guarded = await buildTestApp({ METRICS_TOKEN: TOKEN });
afterAll(() => guarded.close());

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

/** The samples of the exposition text (no comments), after the request log had its turn. */
async function scrape(app: TestApp, key?: string) {
  // Metrics are observed once the response has been sent.
  await Bun.sleep(5);
  const res = await app.call('GET', '/metrics', { key });
  expect(res.status).toBe(200);
  return { res, samples: res.text.split('\n').filter((l) => l && !l.startsWith('#')) };
}

/** The value of the one sample whose name and labels all appear in `line`. */
function sample(samples: string[], name: string, labels: Record<string, string> = {}) {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const found = samples.filter(
    (l) =>
      (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && wanted.every((w) => l.includes(w)),
  );
  return found.length === 1 ? Number(found[0]!.split(' ').at(-1)) : undefined;
}

describe('GET /metrics', () => {
  test('answers in the Prometheus text format, open when METRICS_TOKEN is unset', async () => {
    const { res, samples } = await scrape(t);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(res.text).toContain('# TYPE threadstore_http_requests_total counter');
    expect(sample(samples, 'threadstore_build_info')).toBe(1);
    expect(sample(samples, 'process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  test('counts requests under their route template and status, never the raw path', async () => {
    const { api_key } = await t.tenant();
    const id = crypto.randomUUID();
    const before = await scrape(t);
    const labels = { method: 'GET', route: '/v1/messages/:id', status: '404' };
    const count = sample(before.samples, 'threadstore_http_requests_total', labels) ?? 0;
    for (let i = 0; i < 3; i++) {
      expect((await t.call('GET', `/v1/messages/${id}`, { key: api_key })).status).toBe(404);
    }
    await t.call('GET', `/v1/nowhere/${id}`);
    const { res, samples } = await scrape(t);
    expect(sample(samples, 'threadstore_http_requests_total', labels)).toBe(count + 3);
    const unmatched = { method: 'GET', route: 'unmatched', status: '404' };
    expect(sample(samples, 'threadstore_http_requests_total', unmatched)).toBeGreaterThan(0);
    expect(res.text).not.toMatch(UUID);
    expect(res.text).not.toContain('/v1/nowhere');
  });

  test('has a latency histogram with buckets per route', async () => {
    await t.call('GET', '/livez');
    const { samples } = await scrape(t);
    const buckets = samples.filter((l) =>
      l.startsWith('threadstore_http_request_duration_seconds_bucket{'),
    );
    const livez = buckets.filter((l) => l.includes('route="/livez"'));
    expect(livez.length).toBeGreaterThan(5);
    expect(livez.some((l) => l.includes('le="+Inf"'))).toBe(true);
    const labels = { method: 'GET', route: '/livez' };
    expect(
      sample(samples, 'threadstore_http_request_duration_seconds_count', labels),
    ).toBeGreaterThan(0);
  });

  test('reports the database pool', async () => {
    const { samples } = await scrape(t);
    expect(sample(samples, 'threadstore_db_pool_max')).toBe(t.config.DB_POOL_MAX);
    expect(sample(samples, 'threadstore_db_pool_in_use')).toBeNumber();
    expect(sample(samples, 'threadstore_db_pool_waiting')).toBe(0);
  });

  test('leaves out default metrics Bun cannot measure', async () => {
    const { res } = await scrape(t);
    expect(res.text).not.toContain('nodejs_heap_space_size');
    expect(res.text).not.toContain('nodejs_version_info');
    expect(res.text).toContain('nodejs_eventloop_lag_seconds');
  });
});

describe('GET /metrics with METRICS_TOKEN set', () => {
  test('refuses a missing or wrong token with 401 in the one error shape', async () => {
    for (const key of [undefined, 'wrong-token-0123456789', ADMIN_KEY, `${TOKEN}x`]) {
      const res = await guarded.call('GET', '/metrics', { key });
      expectUnauthorized(res);
      expect(res.text).not.toContain('threadstore_');
    }
  });

  test('answers with the right bearer token, and counts refused scrapes too', async () => {
    expect((await guarded.call('GET', '/metrics')).status).toBe(401);
    const { res } = await scrape(guarded, TOKEN);
    expect(res.text).toMatch(
      /threadstore_http_requests_total\{[^}]*route="\/metrics",status="401"\}/,
    );
  });
});
