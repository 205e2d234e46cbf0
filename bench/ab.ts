// Paired rounds of two threadstore servers, A and B, on one database: two configurations, or
// two source trees (the checkout against a `git worktree` of another commit). Each round loads
// both, in alternating order, and the median of the per-round B/A ratios (throughput, p99 and
// server CPU per request) says what the difference does; this machine's speed drifts too much
// between runs for two separate runs to say it (bench/paired.ts).
import { join } from 'node:path';
import {
  BUN,
  cleanup,
  createTenant,
  jsonAuth,
  median,
  ROOT,
  seedListConversation,
  type ServerProcess,
  startInfrastructure,
  settingsFrom,
  startThreadstore,
} from './lib';
import { pairedRounds } from './paired';

const USAGE = `Usage: bun bench/ab.ts [create|list] [--rounds N] [--seconds S] [--embeddings]
  [--a DIR] [--b DIR] [A.NAME=value …] [B.NAME=value …] [NAME=value …]
DIR is a source tree (default: this one), run with Bun from source; A.NAME=value configures
A only, NAME=value both. E.g. \`bun bench/ab.ts create B.RATE_LIMIT_ENABLED=false\`.`;

const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  console.log(USAGE);
  process.exit(0);
}
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const scenario = args.includes('list') ? 'list' : 'create';
const ROUNDS = Number(flag('--rounds') ?? 8);
const SECONDS = Number(flag('--seconds') ?? 6);
const WARM_UP_S = 4;
const CONNECTIONS = 128;
const both = settingsFrom(args);
const sides = [
  { name: 'A', dir: flag('--a') ?? ROOT, env: { ...both, ...settingsFrom(args, 'A.') } },
  { name: 'B', dir: flag('--b') ?? ROOT, env: { ...both, ...settingsFrom(args, 'B.') } },
];

const { pg, embeddings } = await startInfrastructure();
try {
  const [a, b] = (await Promise.all(
    sides.map((side) =>
      startThreadstore(
        pg.url,
        args.includes('--embeddings') ? embeddings : null,
        side.env,
        side.name,
        [BUN, join(side.dir, 'src', 'index.ts'), 'serve'],
      ),
    ),
  )) as [ServerProcess, ServerProcess];
  const tenant = await createTenant(a.base, 'ab');
  if (scenario === 'list') await seedListConversation(a.base, tenant);
  const options = (server: ServerProcess) =>
    scenario === 'create'
      ? {
          url: `${server.base}/v1/messages`,
          method: 'POST' as const,
          headers: jsonAuth(tenant.api_key),
          body: JSON.stringify({
            conversation_id: 'one',
            role: 'user',
            content: 'hello '.repeat(20),
          }),
        }
      : {
          url: `${server.base}/v1/messages?conversation_id=list&limit=50`,
          headers: jsonAuth(tenant.api_key),
        };
  const rounds = await pairedRounds(a, b, {
    scenario,
    rounds: ROUNDS,
    seconds: SECONDS,
    warmUpS: WARM_UP_S,
    connections: CONNECTIONS,
    request: options,
    label: (round) => `${scenario} round ${round + 1}`,
  });
  const ratios = { rps: [] as number[], p99: [] as number[], cpu: [] as number[] };
  const lines: string[] = [];
  for (const [round, { a: x, b: y }] of rounds.entries()) {
    ratios.rps.push(y.run.rps / x.run.rps);
    ratios.p99.push(y.run.latency.p99 / x.run.latency.p99);
    ratios.cpu.push(y.cpuMsPerRequest / x.cpuMsPerRequest);
    lines.push(
      `| ${round + 1} | ${x.run.rps} | ${x.run.latency.p99} | ${x.cpuMsPerRequest.toFixed(3)} | ` +
        `${y.run.rps} | ${y.run.latency.p99} | ${y.cpuMsPerRequest.toFixed(3)} |`,
    );
  }
  const describe = (side: (typeof sides)[number]) =>
    `${side.dir === ROOT ? 'this tree' : side.dir}${Object.entries(side.env)
      .map(([k, v]) => ` ${k}=${v}`)
      .join('')}`;
  console.log(
    `\n${scenario} at ${CONNECTIONS} connections, ${ROUNDS} rounds of ${SECONDS} s\n` +
      `A: ${describe(sides[0]!)}\nB: ${describe(sides[1]!)}\n\n` +
      '| round | A req/s | A p99 ms | A server CPU ms/req | B req/s | B p99 ms | B server CPU ms/req |\n' +
      '|--:|--:|--:|--:|--:|--:|--:|\n' +
      `${lines.join('\n')}\n\n` +
      `Median B/A: throughput ${median(ratios.rps).toFixed(3)}, p99 ${median(ratios.p99).toFixed(3)}, ` +
      `server CPU per request ${median(ratios.cpu).toFixed(3)}`,
  );
  await Promise.all([a.stop(), b.stop()]);
} finally {
  await cleanup();
}
