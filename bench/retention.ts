// Retention at scale: seeds N messages across 100 tenants with spread-out created_at, checks that
// the job's statements use the indexes (EXPLAIN), runs the job, and checks its per-tenant counts
// against an independent count. Against a throwaway PostgreSQL (or DATABASE_URL).
// Usage: bun bench/retention.ts [--messages 1000000] [--batch 5000]
import { join } from 'node:path';
import autocannon from 'autocannon';
import { type SQL, sql } from 'drizzle-orm';
import { loadConfig } from '../src/config';
import { openDatabase } from '../src/db/client';
import { migrate } from '../src/db/migrate';
import { rowsOf } from '../src/db/raw';
import { createLogger } from '../src/logger';
import { runRetention } from '../src/modules/retention/job';
import {
  archiveBatch,
  deleteEmptyConversations,
  purgeBatch,
} from '../src/modules/retention/queries';
import { startPostgres } from '../harness/postgres';

const TENANTS = 100;
const LOAD_CONNECTIONS = 32;
const LOAD_SECONDS = 10;
const ADMIN = 'bench-admin-key-0123456789';
const CONVERSATIONS_PER_TENANT = 20;
const SEED_CHUNK = 50_000;
const DAY_S = 86_400;

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const value = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(value) || value < 1)
    throw new Error(`--${name} must be a positive integer`);
  return value;
}
const MESSAGES = flag('messages', 1_000_000);
const BATCH = flag('batch', 5000);

const cluster = process.env.DATABASE_URL ? null : await startPostgres();
const config = loadConfig({
  DATABASE_URL: process.env.DATABASE_URL ?? cluster!.url,
  LOG_LEVEL: 'warn',
  // Seeding statements insert 50,000 rows each; the request statement timeout is not for them.
  DB_STATEMENT_TIMEOUT_MS: '0',
  RETENTION_BATCH_SIZE: String(BATCH),
  RETENTION_RUN_TIMEOUT_MS: String(3_600_000),
});
const logger = createLogger('warn');
const database = await openDatabase(config, logger);
const db = database.db;
const rows = async <T>(q: SQL) => rowsOf<T>(await db.execute(q));

try {
  await migrate(database);
  // Policies: every 10th tenant none, every 5th archive only, the rest archive and purge, with
  // varied ages so that each tenant has its own cut-offs.
  const tenants = await rows<{ id: string }>(sql`
    insert into tenants (id, name, settings)
    select gen_random_uuid(), 'bench ' || g,
      case when g % 10 = 0 then '{}'::jsonb
           when g % 5 = 0 then jsonb_build_object('archive_after_days', 20 + g % 7 * 10)
           else jsonb_build_object('archive_after_days', 20 + g % 7 * 10,
                                   'purge_after_days', 120 + g % 4 * 60) end
    from generate_series(1, ${TENANTS}::int) g
    returning id`);
  await db.execute(sql`
    insert into conversations (tenant_id, id)
    select t.id, 'c' || c from tenants t, generate_series(0, ${CONVERSATIONS_PER_TENANT - 1}::int) c
    where t.name like 'bench %'`);

  // created_at: whole days back plus half an hour, so no row sits within minutes of any
  // cut-off, and the independent count (taken just before the run) cannot disagree with the
  // job over a row that aged across a cut-off in between.
  const seedStart = performance.now();
  for (let done = 0; done < MESSAGES; done += SEED_CHUNK) {
    const n = Math.min(SEED_CHUNK, MESSAGES - done);
    await db.execute(sql`
      with t as (select id, row_number() over (order by id) - 1 as k
                 from tenants where name like 'bench %')
      insert into messages (id, tenant_id, conversation_id, role, content, created_at)
      select gen_random_uuid(), t.id, 'c' || (g / ${TENANTS}) % ${CONVERSATIONS_PER_TENANT},
        'user', 'bench message ' || g,
        now() - make_interval(days => abs(hashtext(g::text)) % 400, mins => 30)
      from generate_series(${done}::int, ${done + n - 1}::int) g
      join t on t.k = g % ${TENANTS}`);
    process.stderr.write(`seeded ${done + n}\r`);
  }
  await db.execute(sql`analyze`);
  const seedSeconds = (performance.now() - seedStart) / 1000;
  console.log(`seeded ${MESSAGES} messages in ${seedSeconds.toFixed(1)} s`);

  // EXPLAIN of the job's statements on this data.
  const [sample] = tenants;
  const ago = (days: number) => new Date(Date.now() - days * DAY_S * 1000);
  let seqScans = 0;
  for (const [name, q] of Object.entries({
    purge: purgeBatch(sample!.id, ago(120), BATCH),
    archive: archiveBatch(sample!.id, ago(20), BATCH),
    deleteEmpty: deleteEmptyConversations(sample!.id, ['c1', 'c2']),
  })) {
    const plan = (await rows<{ 'QUERY PLAN': string }>(sql`explain ${q}`))
      .map((r) => r['QUERY PLAN'])
      .join('\n');
    const seq = /Seq Scan on messages/.test(plan);
    if (seq) seqScans++;
    console.log(`\n-- ${name}: ${seq ? 'SEQUENTIAL SCAN' : 'index scans only'}\n${plan}`);
  }

  const expected = new Map(
    (
      await rows<{ id: string; archive: number; purge: number }>(sql`
        with p as (
          select id,
            now() - make_interval(days => (settings->>'archive_after_days')::int) as a,
            now() - make_interval(days => (settings->>'purge_after_days')::int) as d
          from tenants where name like 'bench %')
        select p.id,
          count(*) filter (where p.d is not null and m.created_at < p.d)::int as purge,
          count(*) filter (where p.a is not null and not m.archived and m.created_at < p.a
            and (p.d is null or m.created_at >= p.d))::int as archive
        from p join messages m on m.tenant_id = p.id
        group by p.id`)
    ).map((r) => [r.id, { archived: r.archive, purged: r.purge }]),
  );

  // API write latency without and then during the job: a separate server process on the same
  // database, loaded by autocannon while the job runs in this process.
  const api = await startApi(config.DATABASE_URL!);
  const quiet = await writeLoad(api);
  let jobDone = false;
  const running = runRetention({ database, config, logger }).finally(() => (jobDone = true));
  const during = await writeLoad(api);
  const overlapped = !jobDone;
  const result = await running;
  await api.stop();
  console.log(
    `\nPOST /v1/messages at ${LOAD_CONNECTIONS} connections, ${LOAD_SECONDS} s each: ` +
      `p99 ${quiet.p99} ms without the job, ${during.p99} ms during it ` +
      `(${(during.p99 / Math.max(quiet.p99, 1)).toFixed(2)}x); ` +
      `p50 ${quiet.p50} -> ${during.p50} ms; ${quiet.rps} -> ${during.rps} req/s` +
      (overlapped ? '' : ' (the job ended before the load: only part of it overlapped)'),
  );
  const changed = result.archived + result.purged;
  console.log(
    `\nretention: archived ${result.archived}, purged ${result.purged}, ` +
      `${result.conversations_deleted} conversations emptied and deleted, ` +
      `${result.tenants_processed} tenants, complete ${result.complete}, ` +
      `${(result.duration_ms / 1000).toFixed(1)} s, ` +
      `${Math.round(changed / (result.duration_ms / 1000))} rows/s (batch ${BATCH})`,
  );
  let mismatches = 0;
  for (const [id, want] of expected) {
    const got = result.tenants.find((t) => t.tenant_id === id) ?? { archived: 0, purged: 0 };
    if (got.archived !== want.archived || got.purged !== want.purged) {
      mismatches++;
      console.log(`MISMATCH ${id}: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
    }
  }
  const [left] = await rows<{ overdue: number }>(sql`
    select count(*)::int as overdue from messages m join tenants t on t.id = m.tenant_id
    where t.name like 'bench %' and (
      m.created_at < now() - make_interval(days => (t.settings->>'purge_after_days')::int)
      or (not m.archived and
          m.created_at < now() - make_interval(days => (t.settings->>'archive_after_days')::int)))`);
  console.log(
    `per-tenant counts: ${mismatches === 0 ? 'all exact' : `${mismatches} mismatches`}; ` +
      `rows still overdue: ${left?.overdue}`,
  );
  if (mismatches > 0 || left?.overdue !== 0 || seqScans > 0 || result.error || !result.complete) {
    process.exitCode = 1;
  }
} finally {
  await database.close();
  await cluster?.stop();
}

/** `threadstore serve` from source on a free port, with rate limits raised and no own job. */
async function startApi(url: string) {
  const port = 39_000 + Math.floor(Math.random() * 1000);
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, '..', 'src', 'index.ts')], {
    env: {
      ...process.env,
      DATABASE_URL: url,
      PORT: String(port),
      HOST: '127.0.0.1',
      ADMIN_API_KEY: ADMIN,
      LOG_LEVEL: 'warn',
      RETENTION_INTERVAL_MS: '0',
      RATE_LIMIT_WRITE_PER_MINUTE: '100000000',
      RATE_LIMIT_ADMIN_PER_MINUTE: '100000000',
    },
    stdout: 'ignore',
    stderr: 'inherit',
  });
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    if ((await fetch(`${base}/readyz`).catch(() => null))?.ok) break;
    await Bun.sleep(100);
  }
  const tenant = (await (
    await fetch(`${base}/v1/admin/tenants`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'latency probe' }),
    })
  ).json()) as { api_key: string };
  return {
    base,
    key: tenant.api_key,
    async stop() {
      proc.kill('SIGTERM');
      await proc.exited;
    },
  };
}

async function writeLoad(api: { base: string; key: string }) {
  const r = await autocannon({
    url: `${api.base}/v1/messages`,
    method: 'POST',
    connections: LOAD_CONNECTIONS,
    duration: LOAD_SECONDS,
    headers: { authorization: `Bearer ${api.key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ conversation_id: 'latency', role: 'user', content: 'probe' }),
  });
  return {
    p50: r.latency.p50,
    p99: r.latency.p99,
    rps: Math.round(r.requests.average),
  };
}
