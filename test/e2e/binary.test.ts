// End-to-end tests of the compiled binary: built fresh, copied alone into an empty directory and
// run from other empty directories, over real HTTP on 127.0.0.1, against the test PostgreSQL and
// against the embedded database.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import pkg from '../../package.json' with { type: 'json' };
import {
  BUILD_TIMEOUT_MS,
  binaryEnv,
  buildBinary,
  killAllServers,
  READY_TIMEOUT_MS,
  ROOT,
  ServerProcess,
  TempDirs,
} from '../../harness/binary';
import { LOG_FLUSH_INTERVAL_MS } from '../../src/logger';
import { createDatabase } from '../../harness/postgres';
import { runCommand } from '../../harness/process';

const ADMIN_KEY = 'e2e-admin-key-0123456789';
/** Generous: a fresh embedded database takes 4 to 8 s on a small machine. */
const EMBEDDED_TEST_TIMEOUT_MS = 90_000;
const MIGRATION_COUNT = (
  JSON.parse(readFileSync(join(ROOT, 'drizzle', 'meta', '_journal.json'), 'utf8')) as {
    entries: unknown[];
  }
).entries.length;

let binary = '';

const temp = new TempDirs();
const tempDir = (label: string) => temp.make(label);

beforeAll(async () => {
  // Alone in a directory of its own: nothing beside the binary can help it.
  binary = await buildBinary(tempDir('bin'));
}, BUILD_TIMEOUT_MS);

afterAll(async () => {
  await killAllServers();
  temp.removeAll();
});

/** Runs the binary to completion. */
function run(args: string[], vars: Record<string, string> = {}, cwd = tempDir('cwd')) {
  return runCommand([binary, ...args], { cwd, env: binaryEnv(vars) });
}

/** A running `threadstore serve` of the binary under test. */
class Server extends ServerProcess {
  constructor(vars: Record<string, string>, cwd: string) {
    super(binary, vars, cwd);
  }
}

async function freshDatabase(): Promise<string> {
  return createDatabase(process.env.TEST_DATABASE_URL!, `e2e_${crypto.randomUUID().slice(0, 8)}`);
}

async function appliedMigrations(url: string): Promise<number> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql<{ n: number }[]>`
      select count(*)::int as n from drizzle.__drizzle_migrations`;
    return row!.n;
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** A tenant and one message in it, through the admin key; returns what a later check needs. */
async function tenantWithMessage(server: Server, adminKey: string) {
  const tenant = await server.call('POST', '/v1/admin/tenants', adminKey, { name: 'e2e' });
  expect(tenant.status).toBe(201);
  const created = await server.call('POST', '/v1/messages', tenant.json.api_key, {
    conversation_id: 'e2e-conv',
    role: 'user',
    content: 'survives restarts',
  });
  expect(created.status).toBe(201);
  return {
    tenantId: tenant.json.id as string,
    apiKey: tenant.json.api_key as string,
    messageId: created.json.id as string,
  };
}

describe('command line', () => {
  test('--version prints the package version', async () => {
    const res = await run(['--version']);
    expect(res).toMatchObject({ code: 0, stdout: `${pkg.version}\n` });
  });

  test('--help prints the usage and exits 0', async () => {
    const res = await run(['--help']);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain('Usage:');
  });

  test('an unknown command or flag prints the usage on stderr and exits 2', async () => {
    for (const arg of ['bogus', '--nope']) {
      const res = await run([arg]);
      expect(res.code).toBe(2);
      expect(res.stdout).toBe('');
      expect(res.stderr).toContain(arg);
      expect(res.stderr).toContain('Usage:');
    }
  });

  test('refuses to start in production without ADMIN_API_KEY', async () => {
    const res = await run(['serve'], { NODE_ENV: 'production' });
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain('ADMIN_API_KEY: required when NODE_ENV=production');
  });

  test('names the variable of an invalid configuration', async () => {
    const res = await run(['serve'], { PORT: 'abc' });
    expect(res.code).not.toBe(0);
    expect(res.stderr).toContain('Invalid configuration');
    expect(res.stderr).toMatch(/PORT: .*"abc"/);
  });

  test('healthcheck fails when nothing answers', async () => {
    // Port 1 is privileged and unused here: the connection is refused at once.
    const res = await run(['healthcheck'], { PORT: '1' });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('no healthy server');
  });
});

describe('against PostgreSQL', () => {
  test('migrate applies the embedded migrations from scratch, then finds none pending', async () => {
    const url = await freshDatabase();
    const first = await run(['migrate'], { DATABASE_URL: url });
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('"applied":' + MIGRATION_COUNT);
    const again = await run(['migrate'], { DATABASE_URL: url });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('"applied":0');
    expect(await appliedMigrations(url)).toBe(MIGRATION_COUNT);
  });

  describe('two instances started at once on a fresh database', () => {
    let url = '';
    let servers: Server[] = [];

    beforeAll(async () => {
      url = await freshDatabase();
      const vars = { DATABASE_URL: url, ADMIN_API_KEY: ADMIN_KEY };
      servers = [new Server(vars, tempDir('pg-a')), new Server(vars, tempDir('pg-b'))];
      await Promise.all(servers.map((s) => s.ready()));
    }, READY_TIMEOUT_MS);

    test('both become ready and the migrations ran exactly once', async () => {
      expect(await appliedMigrations(url)).toBe(MIGRATION_COUNT);
      const applied = servers.flatMap((s) =>
        s.logs().filter((l) => l.msg === 'migrations up to date'),
      );
      const counts = applied.map((l) => Number(l.applied)).sort((x, y) => x - y);
      expect(counts).toEqual([0, MIGRATION_COUNT]);
    });

    test('a message written through one instance is read back through the other', async () => {
      const [a, b] = servers as [Server, Server];
      const { apiKey, messageId } = await tenantWithMessage(a, ADMIN_KEY);
      const got = await b.call('GET', `/v1/messages/${messageId}`, apiKey);
      expect(got.status).toBe(200);
      expect(got.json).toMatchObject({ conversation_id: 'e2e-conv', content: 'survives restarts' });
      const list = await b.call('GET', '/v1/messages?conversation_id=e2e-conv', apiKey);
      expect(list.json.messages.map((m: { id: string }) => m.id)).toEqual([messageId]);
    });

    test('export --tenant writes the NDJSON the export route streams; unknown tenant exits 1', async () => {
      const [a] = servers as [Server];
      const { tenantId: id, messageId } = await tenantWithMessage(a, ADMIN_KEY);
      const cli = await run(['export', '--tenant', id], { DATABASE_URL: url });
      expect(cli.code).toBe(0);
      const lines = cli.stdout
        .trimEnd()
        .split('\n')
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.find((l) => l.type === 'message')?.id).toBe(messageId);
      expect(lines.at(-1)).toEqual({ type: 'end', conversations: 1, messages: 1 });
      const http = await fetch(a.url(`/v1/admin/tenants/${id}/export`), {
        headers: { authorization: `Bearer ${ADMIN_KEY}` },
      });
      expect(http.headers.get('content-type')).toBe('application/x-ndjson');
      expect(await http.text()).toBe(cli.stdout);
      const unknown = await run(['export', '--tenant', crypto.randomUUID()], { DATABASE_URL: url });
      expect(unknown).toMatchObject({ code: 1, stdout: '' });
      expect(unknown.stderr).toContain('not found');
    });

    test('logs JSON lines with request ids on stdout, and no generated key', async () => {
      const [a] = servers as [Server];
      const res = await fetch(a.url('/livez'), { headers: { 'x-request-id': 'e2e-log-1' } });
      expect(res.status).toBe(200);
      // Lines are buffered and written at least every LOG_FLUSH_INTERVAL_MS.
      const deadline = Date.now() + LOG_FLUSH_INTERVAL_MS * 5;
      let line: Record<string, unknown> | undefined;
      while (!line && Date.now() < deadline) {
        await Bun.sleep(20);
        line = a.logs().find((l) => l.request_id === 'e2e-log-1');
      }
      expect(line).toMatchObject({ level: 'info', route: '/livez', status: 200 });
      expect(
        a
          .logs()
          .filter((l) => l.msg === 'request')
          .every((l) => l.request_id),
      ).toBe(true);
      for (const s of servers) expect(s.stderr).not.toContain('ADMIN_API_KEY');
    });

    test('serves Prometheus metrics labelled by route template', async () => {
      const [a] = servers as [Server];
      await fetch(a.url(`/v1/messages/${crypto.randomUUID()}`));
      const res = await fetch(a.url('/metrics'));
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text).toContain(
        'threadstore_http_requests_total{method="GET",route="/v1/messages/:id"',
      );
      expect(text).toContain('threadstore_db_pool_in_use');
      expect(text).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}/);
    });

    test('healthcheck succeeds against a running server', async () => {
      const res = await run(['healthcheck'], { PORT: String(servers[0]!.port) });
      expect(res).toMatchObject({ code: 0, stderr: '' });
    });

    test('SIGTERM stops both with exit code 0', async () => {
      expect(await Promise.all(servers.map((s) => s.stop()))).toEqual([0, 0]);
      expect(servers[0]!.logs().at(-1)).toMatchObject({ msg: 'stopped' });
    });
  });
});

describe('graceful shutdown', () => {
  test(
    'SIGTERM with a write in flight: new connections are refused, the write finishes 2xx and is stored, exit 0',
    async () => {
      const url = await freshDatabase();
      const server = await new Server(
        { DATABASE_URL: url, ADMIN_API_KEY: ADMIN_KEY, SHUTDOWN_TIMEOUT_MS: '10000' },
        tempDir('shutdown'),
      ).ready();
      const tenant = await server.call('POST', '/v1/admin/tenants', ADMIN_KEY, { name: 'drain' });
      const blocker = postgres(url, { max: 2, onnotice: () => {} });
      try {
        // Hold the write inside the database so it is certainly in flight at the signal.
        const lock = await blocker.reserve();
        await lock`begin`;
        await lock`lock table messages in access exclusive mode`;
        const inFlight = server.call('POST', '/v1/messages', tenant.json.api_key, {
          conversation_id: 'drain',
          role: 'user',
          content: 'in flight at SIGTERM',
        });
        for (let i = 0; i < 100; i++) {
          const [waiting] = await blocker`select count(*)::int as n from pg_stat_activity
            where application_name = 'threadstore' and wait_event_type = 'Lock'`;
          if (waiting!.n > 0) break;
          await Bun.sleep(20);
        }
        server.proc.kill('SIGTERM');
        await Bun.sleep(300);
        const refused = await fetch(server.url('/livez')).then(
          (r) => r.status,
          () => 'refused',
        );
        expect(refused).toBe('refused');
        expect(server.proc.exitCode).toBeNull();
        await lock`rollback`;
        lock.release();
        const res = await inFlight;
        expect(res.status).toBe(201);
        expect(await server.proc.exited).toBe(0);
        const stored = await blocker`select content from messages where id = ${res.json.id}`;
        expect(stored[0]?.content).toBe('in flight at SIGTERM');
      } finally {
        await blocker.end({ timeout: 5 });
      }
    },
    READY_TIMEOUT_MS,
  );
});

describe('with the embedded database', () => {
  // Filled by the first test, reused by the second: a fresh embedded database costs seconds.
  let firstCwd = '';
  let saved: { apiKey: string; messageId: string } | undefined;

  /** The admin key a development server generated and printed once on stderr. */
  async function generatedKey(server: Server): Promise<string> {
    const key = (await server.stderrMatch(/ADMIN_API_KEY=(\S+)\n/))[1]!;
    expect(server.stderr.split('ADMIN_API_KEY=').length).toBe(2);
    return key;
  }

  test(
    'creates ./data under the working directory and keeps data across a restart',
    async () => {
      firstCwd = tempDir('embedded');
      const first = await new Server({}, firstCwd).ready();
      saved = await tenantWithMessage(first, await generatedKey(first));
      expect(first.logs().find((l) => l.msg === 'threadstore listening')).toMatchObject({
        database: 'pglite',
      });
      // pgvector loads from the bundle embedded in the binary, which PGlite cannot read in place.
      expect(first.logs().find((l) => l.msg === 'embedded database opened')).toMatchObject({
        vector: expect.stringMatching(/^\d+\.\d+\.\d+$/),
      });
      expect(await first.stop()).toBe(0);
      expect(existsSync(join(firstCwd, 'data', 'PG_VERSION'))).toBe(true);
      // Released on a clean stop, so the next start does not have to judge a stale lock.
      expect(existsSync(join(firstCwd, 'data', 'threadstore.pid'))).toBe(false);

      const second = await new Server({}, firstCwd).ready();
      const adminKey = await generatedKey(second);
      const got = await second.call('GET', `/v1/messages/${saved.messageId}`, saved.apiKey);
      expect(got.status).toBe(200);
      expect(got.json.content).toBe('survives restarts');
      const tenants = await second.call('GET', '/v1/admin/tenants', adminKey);
      expect(tenants.status).toBe(200);
      expect(await second.stop()).toBe(0);
    },
    EMBEDDED_TEST_TIMEOUT_MS,
  );

  test(
    'uses DATA_DIR when set, and refuses a second process on the same directory',
    async () => {
      if (!saved) throw new Error('needs the data directory of the previous test');
      const dataDir = join(tempDir('datadir'), 'db');
      cpSync(join(firstCwd, 'data'), dataDir, { recursive: true });
      const cwd = tempDir('embedded-cwd');
      const vars = { DATA_DIR: dataDir, ADMIN_API_KEY: ADMIN_KEY };
      const server = await new Server(vars, cwd).ready();
      expect(server.stderr).not.toContain('ADMIN_API_KEY');
      const got = await server.call('GET', `/v1/messages/${saved.messageId}`, saved.apiKey);
      expect(got.status).toBe(200);
      expect(existsSync(join(cwd, 'data'))).toBe(false);

      const second = await run(['migrate'], vars);
      expect(second.code).toBe(1);
      expect(second.stderr).toContain(`is in use by process ${server.proc.pid}`);
      expect(await server.stop()).toBe(0);
    },
    EMBEDDED_TEST_TIMEOUT_MS,
  );
});
