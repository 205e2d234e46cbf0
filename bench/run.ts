// Load test of the compiled binary against a throwaway PostgreSQL, on 127.0.0.1 only.
// Usage: bun run bench [--quick]   (the full scenario suite is its own issue; this is the core)
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import autocannon from 'autocannon';
import postgres from 'postgres';
import { startPostgres } from '../test/support/postgres';

const ROOT = join(import.meta.dir, '..');
const BINARY = join(ROOT, 'dist', 'threadstore');
const quick = process.argv.includes('--quick');
const DURATION_S = quick ? 5 : 15;
const CONNECTIONS = 128;
const WRITES = quick ? 5_000 : 20_000;
const PORT = 38000 + Math.floor(Math.random() * 1000);
const ADMIN = 'bench-admin-key-0123456789';
const BASE = `http://127.0.0.1:${PORT}`;

if (!existsSync(BINARY)) {
  const build = Bun.spawnSync(['bun', 'run', 'build'], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (build.exitCode !== 0) process.exit(1);
}

const pg = await startPostgres();
const server = Bun.spawn([BINARY, 'serve'], {
  env: {
    ...process.env,
    DATABASE_URL: pg.url,
    PORT: String(PORT),
    HOST: '127.0.0.1',
    ADMIN_API_KEY: ADMIN,
    LOG_LEVEL: 'warn',
    DB_POOL_MAX: '20',
    // Budgets raised through configuration, the limiter itself still runs on every request.
    RATE_LIMIT_WRITE_PER_MINUTE: '100000000',
    RATE_LIMIT_READ_PER_MINUTE: '100000000',
    RATE_LIMIT_ADMIN_PER_MINUTE: '100000000',
  },
  stdout: 'ignore',
  stderr: 'inherit',
});

async function cleanup() {
  server.kill('SIGTERM');
  await server.exited;
  await pg.stop();
}
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));

try {
  for (let i = 0; i < 100; i++) {
    if ((await fetch(`${BASE}/readyz`).catch(() => null))?.ok) break;
    await Bun.sleep(100);
  }
  const tenant = (await (
    await fetch(`${BASE}/v1/admin/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'bench' }),
    })
  ).json()) as { api_key: string; id: string };
  const auth = { authorization: `Bearer ${tenant.api_key}`, 'content-type': 'application/json' };
  const body = JSON.stringify({
    conversation_id: 'bench',
    role: 'user',
    content: 'hello '.repeat(20),
  });

  const scenarios: { name: string; opts: autocannon.Options; writes?: boolean }[] = [
    { name: 'GET /livez', opts: { url: `${BASE}/livez` } },
    {
      name: 'POST /v1/messages',
      // A fixed number of requests rather than a duration: autocannon then waits for every
      // response, so the 2xx count can be compared with the rows stored, exactly.
      opts: { url: `${BASE}/v1/messages`, method: 'POST', headers: auth, body, amount: WRITES },
      writes: true,
    },
    {
      name: 'GET /v1/messages (page of 50)',
      opts: { url: `${BASE}/v1/messages?conversation_id=bench&limit=50`, headers: auth },
    },
  ];

  const rows: string[] = [];
  let created = 0;
  for (const s of scenarios) {
    process.stderr.write(`running ${s.name} for ${DURATION_S}s at ${CONNECTIONS} connections...\n`);
    const r = await autocannon({
      connections: CONNECTIONS,
      ...(s.opts.amount ? {} : { duration: DURATION_S }),
      ...s.opts,
    });
    if (s.writes) created += r['2xx'];
    rows.push(
      `| ${s.name} | ${Math.round(r.requests.average)} | ${r.latency.p50} | ${r.latency.p90} | ${r.latency.p99} | ${r.latency.max} | ${r.non2xx} | ${r.errors + r.timeouts} |`,
    );
  }
  const sql = postgres(pg.url, { max: 1 });
  const [counted] = await sql<
    { n: number }[]
  >`select count(*)::int as n from messages where tenant_id = ${tenant.id}`;
  await sql.end();
  const n = counted?.n ?? -1;

  console.log(
    '| scenario | req/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | errors+timeouts |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const row of rows) console.log(row);
  console.log(
    `\nzero-loss: ${created} created (2xx) vs ${n} rows: ${created === n ? 'OK' : 'MISMATCH'}`,
  );
  if (created !== n) process.exitCode = 1;
} finally {
  await cleanup();
}
