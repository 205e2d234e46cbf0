// CPU time per request, split by process (server, PostgreSQL, load generator), for threadstore
// and the baseline on the create and list scenarios. Throughput on a machine whose cores are
// shared by all three is bounded by their sum, so this says where a ratio is lost, and stays
// meaningful when the machine's speed drifts between rounds.
// Usage: bun bench/cpu.ts [create|list] [requests] [--source] [--only] [--embeddings] [NAME=value …]
// --only skips the baseline; --source runs src/index.ts instead of dist/; --embeddings runs
// threadstore with the local embeddings API, as the paired rounds do (its worker then embeds
// every message written, the baseline's too; the API's own process is not counted);
// NAME=value sets threadstore's configuration
// (e.g. LOG_LEVEL=silent), to measure what one piece costs.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import postgres from 'postgres';
import {
  BUN,
  cleanup,
  cpuOf,
  createTenant,
  jsonAuth,
  ensureBinary,
  load,
  seedListConversation,
  type ServerProcess,
  startBaseline,
  startInfrastructure,
  settingsFrom,
  startThreadstore,
  TICK_MS,
} from './lib';

const args = process.argv.slice(2);
const amount = Number(args.find((a) => /^\d+$/.test(a)) ?? 10_000);
const fromSource = args.includes('--source');
const onlyThreadstore = args.includes('--only');
const withEmbeddings = args.includes('--embeddings');
const overrides = settingsFrom(args);

/** CPU of each thread of a process by thread name (main thread, GC helpers, JIT, I/O), in ms. */
function threadCpu(pid: number): Map<string, number> {
  const byName = new Map<string, number>();
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')).replace(/\d+$/, '#');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ms = (Number(fields[11]) + Number(fields[12])) * TICK_MS;
      byName.set(name, (byName.get(name) ?? 0) + ms);
    }
  } catch {
    // gone
  }
  return byName;
}

/** CPU of every process whose parent is `parent`, plus the parent itself, in ms. */
function treeCpu(parent: number): number {
  let total = cpuOf(parent);
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent) total += cpuOf(Number(entry));
    } catch {
      // gone
    }
  }
  return total;
}

function selfCpu(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

if (!fromSource) ensureBinary();
const { pg, embeddings } = await startInfrastructure();
const postmaster = Number.parseInt(readFileSync(join(pg.dataDir, 'postmaster.pid'), 'utf8'), 10);
const sql = postgres(pg.url, { max: 2, onnotice: () => {} });
try {
  const ts = await startThreadstore(
    pg.url,
    withEmbeddings ? embeddings : null,
    overrides,
    'threadstore',
    fromSource ? [BUN, 'src/index.ts', 'serve'] : undefined,
  );
  const tenant = await createTenant(ts.base, 'cpu');
  await seedListConversation(ts.base, tenant);
  await sql`analyze messages, message_search`;
  const baseline = await startBaseline(pg.url, { [tenant.api_key]: tenant.id }, withEmbeddings);
  const headers = jsonAuth(tenant.api_key);
  const scenarios = {
    create: {
      method: 'POST' as const,
      path: '/v1/messages',
      body: JSON.stringify({ conversation_id: 'one', role: 'user', content: 'hello '.repeat(20) }),
    },
    list: {
      method: 'GET' as const,
      path: '/v1/messages?conversation_id=list&limit=50',
      body: undefined,
    },
  };
  const rows: string[] = [];
  const breakdown: string[] = [];
  const measure = async (server: ServerProcess, name: keyof typeof scenarios) => {
    const s = scenarios[name];
    const opts = { url: `${server.base}${s.path}`, method: s.method, headers, body: s.body };
    await load(
      server,
      { scenario: `${name} warm-up` },
      { ...opts, connections: 128, amount: 2000 },
    );
    const before = { server: cpuOf(server.pid), pg: treeCpu(postmaster), client: selfCpu() };
    const threadsBefore = threadCpu(server.pid);
    const run = await load(server, { scenario: name }, { ...opts, connections: 128, amount });
    const per = (ms: number) => (ms / run.requests).toFixed(3);
    const threads = [...threadCpu(server.pid)]
      .map(([thread, ms]) => [thread, ms - (threadsBefore.get(thread) ?? 0)] as const)
      .filter(([, ms]) => ms > 0)
      .sort((a, b) => b[1] - a[1])
      .map(([thread, ms]) => `${thread} ${per(ms)}`);
    breakdown.push(`${server.name} ${name}: ${threads.join(', ')}`);
    rows.push(
      `| ${server.name} | ${name} | ${run.rps} | ${per(cpuOf(server.pid) - before.server)} | ` +
        `${per(treeCpu(postmaster) - before.pg)} | ${per(selfCpu() - before.client)} |`,
    );
  };
  const only = args.find((a) => a === 'create' || a === 'list');
  for (const name of only ? [only] : (['create', 'list'] as const)) {
    await measure(ts, name);
    if (!onlyThreadstore) await measure(baseline, name);
  }
  console.log(
    `\n${amount} requests per run at 128 connections; ms of CPU per request\n\n` +
      '| server | scenario | req/s | server ms | PostgreSQL ms | client ms |\n' +
      '|---|---|--:|--:|--:|--:|\n' +
      rows.join('\n') +
      `\n\nServer CPU by thread, ms per request:\n${breakdown.join('\n')}`,
  );
  await ts.stop();
  await baseline.stop();
} finally {
  await sql.end();
  await cleanup();
}
