// Operator-facing behaviour of the command line and of start-up: exit codes a timer can act on,
// readiness probes, and warnings about an environment that is probably not what was meant.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import { healthcheck, parseArgs, UsageError, USAGE } from '../src/cli';
import { configKeys, configWarnings, loadConfig } from '../src/config';
import { retentionOutcome } from '../src/server';
import type { RetentionResult } from '../src/modules/retention/model';
import { createDatabase } from '../harness/postgres';
import { runCommand } from '../harness/process';

const ROOT = join(import.meta.dir, '..');
const BUN = join(ROOT, 'node_modules', '.bin', 'bun');
/** The advisory lock key of the retention job, as src/modules/retention/job.ts takes it. */
const RETENTION_LOCK_KEY = 0x747372657461696en;
const DAY_MS = 86_400_000;

/** `threadstore <args>` from the source tree, with only the environment given. */
function cli(args: string[], env: Record<string, string>) {
  return runCommand([BUN, '--no-env-file', join(ROOT, 'src', 'index.ts'), ...args], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LOG_LEVEL: 'warn', ...env },
  });
}

describe('threadstore retention run exit codes', () => {
  let url = '';
  let sql: postgres.Sql;

  beforeAll(async () => {
    url = await createDatabase(
      process.env.TEST_DATABASE_URL!,
      `ops_${crypto.randomUUID().slice(0, 8)}`,
    );
    const migrated = await cli(['migrate'], { DATABASE_URL: url });
    expect(migrated.code).toBe(0);
    sql = postgres(url, { max: 2, onnotice: () => {} });
  });

  afterAll(async () => {
    await sql?.end({ timeout: 5 });
  });

  test('a completed run exits 0 and says so', async () => {
    const res = await cli(['retention', 'run'], { DATABASE_URL: url });
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout)).toMatchObject({ complete: true, skipped: false });
    expect(res.stderr).toContain('retention run completed');
  });

  test('a run skipped because another instance holds the lock exits 0 and says so', async () => {
    const holder = await sql.reserve();
    try {
      await holder`select pg_advisory_lock(${RETENTION_LOCK_KEY.toString()}::bigint)`;
      const res = await cli(['retention', 'run'], { DATABASE_URL: url });
      expect(res.code).toBe(0);
      expect(JSON.parse(res.stdout)).toMatchObject({ skipped: true });
      expect(res.stderr).toContain('retention run skipped');
    } finally {
      await holder`select pg_advisory_unlock_all()`;
      holder.release();
    }
  });

  test('a run stopped by its time limit before the end exits 1', async () => {
    // Thousands of old messages archived one per batch: far more than a second of work.
    const tenantId = crypto.randomUUID();
    await sql`insert into tenants (id, name, settings)
      values (${tenantId}, 'ops', ${sql.json({ archive_after_days: 1 })})`;
    await sql`insert into conversations (tenant_id, id) values (${tenantId}, 'old')`;
    const old = new Date(Date.now() - 30 * DAY_MS).toISOString();
    await sql`insert into messages (id, tenant_id, conversation_id, role, content, created_at)
      select gen_random_uuid(), ${tenantId}, 'old', 'user', 'm' || i,
        ${old}::timestamptz + i * interval '1 ms'
      from generate_series(1, 20000) as i`;
    const res = await cli(['retention', 'run'], {
      DATABASE_URL: url,
      RETENTION_BATCH_SIZE: '1',
      RETENTION_RUN_TIMEOUT_MS: '1000',
    });
    expect(JSON.parse(res.stdout)).toMatchObject({ complete: false, skipped: false });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('stopped before the end');
  }, 60_000);

  test('a failed run maps to exit 1', () => {
    const failed = { complete: false, skipped: false, error: 'x' } as RetentionResult;
    expect(retentionOutcome(failed).code).toBe(1);
    const done = { complete: true, skipped: false, archived: 0, purged: 0 } as RetentionResult;
    expect(retentionOutcome(done).code).toBe(0);
  });

  test('the exit codes are in --help', () => {
    expect(USAGE).toContain('exit 0 when the run completed or was skipped');
    expect(USAGE).toMatch(/Exit codes: 0 success, 1 failure/);
  });
});

describe('threadstore healthcheck --ready', () => {
  test('parses --ready, and nothing else, as the readiness probe', () => {
    expect(parseArgs(['healthcheck', '--ready'])).toEqual({ kind: 'healthcheck', probe: 'readyz' });
    expect(() => parseArgs(['healthcheck', '--bogus'])).toThrow(UsageError);
  });

  test('probes /readyz, so a live but unready server fails it', async () => {
    // A server that is alive and not ready: what an instance whose database is gone answers.
    const server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: (req) =>
        new Response(null, { status: new URL(req.url).pathname === '/livez' ? 200 : 503 }),
    });
    try {
      expect(await healthcheck(server.port!, '127.0.0.1', 'livez')).toBe(true);
      expect(await healthcheck(server.port!, '127.0.0.1', 'readyz')).toBe(false);
    } finally {
      server.stop(true);
    }
  });
});

describe('start-up warnings', () => {
  const noDefaults = { DATABASE_URL: 'postgres://x@127.0.0.1/x', NODE_ENV: 'development' };

  test('a misspelled variable gets a warning naming what it probably meant', () => {
    const env = {
      RATE_LIMIT_WRITE_PER_MINUT: '5',
      DB_POOLMAX: '3',
      log_level: 'debug',
      EMBEDDING_URLS: 'http://x',
      RATE_LIMIT_SEARCH_PER_MINUTE: '9',
    };
    const warnings = configWarnings(env, noDefaults);
    const byName = new Map(warnings.map((w) => [w.variable, w]));
    expect(byName.get('RATE_LIMIT_WRITE_PER_MINUT')?.suggestion).toBe(
      'RATE_LIMIT_WRITE_PER_MINUTE',
    );
    expect(byName.get('DB_POOLMAX')?.suggestion).toBe('DB_POOL_MAX');
    expect(byName.get('log_level')?.suggestion).toBe('LOG_LEVEL');
    expect(byName.get('EMBEDDING_URLS')?.suggestion).toBe('EMBEDDING_URL');
    // No known variable is close, but the family is threadstore's.
    expect(byName.get('RATE_LIMIT_SEARCH_PER_MINUTE')?.message).toContain('not a threadstore');
    expect(warnings).toHaveLength(5);
  });

  test('no warning for the variables of the system and of other programs, nor for known ones', () => {
    const env: Record<string, string> = {
      PATH: '/bin',
      HOME: '/root',
      HOSTNAME: 'vm',
      USER: 'x',
      SHELL: '/bin/sh',
      LANG: 'C',
      TERM: 'xterm',
      PWD: '/',
      TZ: 'UTC',
      NODE_OPTIONS: '',
      BUN_INSTALL: '/b',
      PGPASSWORD: 'x',
      INVOCATION_ID: 'x',
      JOURNAL_STREAM: 'x',
    };
    for (const key of configKeys()) env[key] = 'x';
    expect(configWarnings(env, noDefaults)).toEqual([]);
  });

  test('never quotes a value: a misspelled secret stays secret', () => {
    const warnings = configWarnings({ EMBEDDING_API_KY: 'sk-live-secret-value' }, noDefaults);
    expect(warnings).toHaveLength(1);
    expect(JSON.stringify(warnings)).not.toContain('sk-live-secret-value');
  });

  test('the embedded database under NODE_ENV=production gets a loud warning', () => {
    const config = loadConfig({ NODE_ENV: 'production', ADMIN_API_KEY: 'a'.repeat(20) });
    const warnings = configWarnings({}, config);
    expect(warnings.map((w) => w.message).join('\n')).toContain('EMBEDDED database');
    expect(configWarnings({}, { ...config, DATABASE_URL: 'postgres://x@h/x' })).toEqual([]);
  });

  test('start-up logs them before it touches the database', async () => {
    const res = await cli(['migrate'], {
      DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none',
      DB_CONNECT_TIMEOUT_MS: '200',
      RATE_LIMIT_WRITE_PER_MINUT: '5',
    });
    expect(res.code).toBe(1);
    expect(res.stdout).toContain('did you mean RATE_LIMIT_WRITE_PER_MINUTE?');
  });
});

describe('shipped configuration files', () => {
  test('.env.example keeps every default commented out, so copying it changes nothing', () => {
    const text = readFileSync(join(ROOT, '.env.example'), 'utf8');
    const active = text.split('\n').filter((line) => /^[A-Z][A-Z0-9_]*=/.test(line));
    expect(active).toEqual([]);
  });

  test('docker-compose.yml publishes on loopback only and needs an admin key from the operator', () => {
    const text = readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8');
    const ports = [...text.matchAll(/^\s+- '([^']*:\d+)'$/gm)].map((m) => m[1]!);
    expect(ports.length).toBeGreaterThan(0);
    for (const port of ports) expect(port.startsWith('127.0.0.1:')).toBe(true);
    // ${VAR:?message}: Compose refuses to start when the operator has not set it.
    expect(text).toMatch(/ADMIN_API_KEY: \$\{ADMIN_API_KEY:\?[^}]+\}/);
    expect(text).not.toContain('change-me');
  });
});
