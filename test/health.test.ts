import { afterAll, describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { migrate } from '../src/db/migrate';
import type { DatabaseHandle } from '../src/db/types';
import { DATABASE_TIMEOUT_MS, healthReport } from '../src/modules/health/service';
import { VERSION } from '../src/version';
import {
  ADMIN_KEY,
  buildTestApp,
  sharedApp,
  type TestApp,
  expectUnauthorized,
} from './support/app';
import { startPostgres, type PostgresCluster } from '../harness/postgres';

const t = await sharedApp();

const CHECKS = [
  'database:responseTime',
  'database:connections',
  'migrations',
  'embeddings',
  'retention',
  'keys:listener',
  'uptime',
];

/** A fail must come well before the 5 s a monitoring probe would typically wait. */
const PROMPT_MS = 5000;

const health = (app: TestApp, key: string | null = ADMIN_KEY) =>
  app.call('GET', '/v1/admin/health', { key });

describe('admin health report', () => {
  test('passes with every check present, as application/health+json', async () => {
    const res = await health(t);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/health+json');
    expect(res.json).toMatchObject({ status: 'pass', version: VERSION });
    expect(res.json.output).toBeUndefined();
    expect(Object.keys(res.json.checks).sort()).toEqual([...CHECKS].sort());
    for (const key of CHECKS) {
      const [reading] = res.json.checks[key];
      expect({ key, status: reading.status }).toEqual({ key, status: 'pass' });
      expect(Number.isNaN(Date.parse(reading.time))).toBe(false);
    }
    const [ping] = res.json.checks['database:responseTime'];
    expect(ping).toMatchObject({ componentType: 'datastore', observedUnit: 'ms' });
    expect(ping.observedValue).toBeNumber();
    const [pool] = res.json.checks['database:connections'];
    expect(pool).toMatchObject({ observedUnit: 'connections', max: t.config.DB_POOL_MAX });
    expect(pool.waiting).toBe(0);
    expect(res.json.checks.embeddings[0].output).toBe(
      'disabled: embeddings are not configured (EMBEDDING_URL)',
    );
    // 'no run yet', or a run stored by another file's tests in the shared database.
    expect(res.json.checks.retention[0].status).toBe('pass');
    expect(res.json.checks.uptime[0]).toMatchObject({ observedUnit: 's', componentType: 'system' });
  });

  test('needs the admin key, and refuses in the one error shape', async () => {
    for (const key of [null, 'not-the-admin-key-at-all', 'ts_sometenantkey']) {
      const res = await health(t, key);
      expectUnauthorized(res);
      expect(res.text).not.toContain('checks');
    }
  });

  test('is documented in OpenAPI with its schema and tags', async () => {
    const doc = (await t.call('GET', '/openapi.json')).json;
    const op = doc.paths['/v1/admin/health'].get;
    expect(op.tags).toContain('admin');
    expect(Object.keys(op.responses)).toEqual(expect.arrayContaining(['200', '401', '503']));
    expect(doc.paths['/metrics'].get.tags).toContain('observability');
    expect(doc.paths['/readyz'].get.tags).toContain('probes');
  });
});

describe('when its database stops', () => {
  let cluster: PostgresCluster | undefined;
  let app: TestApp | undefined;
  afterAll(async () => {
    await app?.close();
    await cluster?.stop();
  }, 30_000);

  test('turns fail with 503 promptly, then pass again once the database is back', async () => {
    cluster = await startPostgres();
    app = await buildTestApp({ DATABASE_URL: cluster.url, DB_CONNECT_TIMEOUT_MS: '1000' });
    await migrate(app.database);
    // The test cluster runs with synchronous_commit=off: without this, the migration's commit
    // may still sit in WAL buffers when the server is killed, and recovery would undo it.
    await app.db.execute(sql`checkpoint`);
    const before = await health(app);
    expect(before.status).toBe(200);
    expect(before.json.status).toBe('pass');

    cluster.kill('SIGKILL');
    const killedAt = performance.now();
    // Backends notice their postmaster's death within milliseconds, not at once: a check in
    // that gap still passes on an open connection. Every answer must come promptly all the same.
    let down = await health(app);
    while (down.status !== 503 && performance.now() - killedAt < PROMPT_MS) {
      await Bun.sleep(50);
      const asked = performance.now();
      down = await health(app);
      expect(performance.now() - asked).toBeLessThan(PROMPT_MS);
    }
    expect(performance.now() - killedAt).toBeLessThan(PROMPT_MS);
    expect(down.status).toBe(503);
    expect(down.headers.get('content-type')).toBe('application/health+json');
    expect(down.json.status).toBe('fail');
    // Which database check sees the failure first depends on when the connection drops.
    expect(down.json.output).toMatch(/^(database:responseTime|migrations): /);
    expect(down.json.checks.migrations[0].status).toBe('fail');
    // What does not depend on the database still reports.
    expect(down.json.checks.uptime[0].status).toBe('pass');

    await cluster.start();
    // postgres.js reconnects on the next query by itself; give the server a moment to accept.
    let after = await health(app);
    for (let i = 0; i < 20 && after.json.status !== 'pass'; i++) {
      await Bun.sleep(250);
      after = await health(app);
    }
    expect(after.status).toBe(200);
    expect(after.json.status).toBe('pass');
  }, 60_000);
});

describe('when its database hangs', () => {
  test('fails each database check within the timeout instead of hanging with it', async () => {
    // A server that accepts and never answers (SIGSTOPped, a black-holed network) cannot be made
    // from a real cluster cheaply: stopping the postmaster leaves open backends answering.
    const hung = {
      ...t.database,
      ping: () => new Promise<void>(() => {}),
    } satisfies DatabaseHandle;
    const started = performance.now();
    const report = await healthReport({ ...t.deps, database: hung, startedAt: new Date() });
    expect(performance.now() - started).toBeLessThan(DATABASE_TIMEOUT_MS + 1000);
    expect(report.status).toBe('fail');
    expect(report.checks['database:responseTime'][0]!.output).toContain('timed out');
    expect(report.checks.migrations[0]!.status).toBe('fail');
  });

  test('warns when queries are waiting for a connection', async () => {
    const busy = {
      ...t.database,
      poolStats: () => ({ max: 2, inUse: 2, waiting: 3, inFlight: 4 }),
    } satisfies DatabaseHandle;
    const report = await healthReport({ ...t.deps, database: busy, startedAt: new Date() });
    expect(report.status).toBe('warn');
    expect(report.checks['database:connections'][0]).toMatchObject({
      status: 'warn',
      observedValue: 2,
      max: 2,
      waiting: 3,
    });
    expect(report.output).toContain('database:connections');
  });
});

describe('readiness', () => {
  test('answers 503 not_ready with Retry-After as soon as shutdown begins', async () => {
    const app = await buildTestApp();
    try {
      expect((await app.call('GET', '/readyz')).status).toBe(200);
      app.deps.lifecycle.shuttingDown = true;
      const res = await app.call('GET', '/readyz');
      expect(res.status).toBe(503);
      expect(res.json.error.code).toBe('not_ready');
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      // Liveness is a different question: the process is still fine while it drains.
      expect((await app.call('GET', '/livez')).status).toBe(200);
    } finally {
      await app.close();
    }
  });
});
