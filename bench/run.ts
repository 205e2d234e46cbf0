// Load test of the compiled binary on 127.0.0.1: every scenario at 128 and 256 connections,
// zero-loss and rate-limit accounting, paired rounds against the framework-free baseline, and
// what each piece of middleware costs. Results: bench/results/<date>-<commit>.json, a Markdown
// table on stdout and an SVG chart beside the JSON.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import type autocannon from 'autocannon';
import postgres from 'postgres';
import {
  type Embeddings,
  type ServerProcess,
  type Tenant,
  ADMIN_KEY,
  api,
  cleanup,
  createTenant,
  jsonAuth,
  ensureBinary,
  load,
  median,
  ROOT,
  startBaseline,
  startInfrastructure,
  settingsFrom,
  startThreadstore,
} from './lib';
import { pairedRounds } from './paired';
import { renderMarkdown, renderSvg } from './report';
import {
  type Corpus,
  embeddingBacklogDrained,
  middlewareVariants,
  mixedRequests,
  seedCorpus,
} from './scenarios';
import type { BenchResults, Check, MiddlewareCost, Ratio, Run } from './types';

const USAGE = `Usage: bun run bench [--quick] [--ratios-only] [--rounds N]
  [--middleware|--no-middleware] [--rebuild] [NAME=value …]
NAME=value sets threadstore's configuration for the whole run (e.g. DB_PIPELINE_DEPTH=1), to
measure a setting against the baseline.`;

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
// Only the paired rounds against the baseline (and the middleware with --middleware): for
// checking what a change does to the ratios, in minutes; writes no results file.
const ratiosOnly = args.includes('--ratios-only');
// Switching middleware off takes a few minutes more: on by default in the full run only.
const withMiddleware =
  args.includes('--middleware') || (!quick && !ratiosOnly && !args.includes('--no-middleware'));
const ROUNDS = Number(flag('--rounds') ?? 5);
const overrides = settingsFrom(args);
const DURATION_S = quick ? 5 : 10;
const RATIO_DURATION_S = quick ? 4 : 8;
const WARM_UP_S = 3;
const LEVELS = quick ? [128] : [128, 256];
const CREATES = quick ? 4_000 : 10_000;
const BATCHES = quick ? 400 : 1_000;
const BATCH_SIZE = 20;
const MIXED = quick ? 5_000 : 15_000;
const RATE_LIMIT_BUDGET = 1_000;
const GOALS = { create: { rps: 0.8, p99: 1.25 }, 'list 50': { rps: 0.75, p99: 1.25 } };

const runs: Run[] = [];
const backlogs: NonNullable<BenchResults['embeddingBacklogs']> = [];
const checks: Check[] = [];
const check = (name: string, ok: boolean, detail: string) => {
  checks.push({ name, ok, detail });
  process.stderr.write(`  ${ok ? 'ok' : 'FAILED'}: ${name}: ${detail}\n`);
};
const strip = ({ raw: _raw, ...run }: Run & { raw: autocannon.Result }): Run => run;

/** The whole bench: scenarios and their checks, paired rounds, middleware; then the results. */
async function main(): Promise<void> {
  ensureBinary(args.includes('--rebuild'));
  const { pg, embeddings } = await startInfrastructure();
  const sql = postgres(pg.url, { max: 2 });
  const rowsOf = async (tenant: string) => {
    const [row] = await sql<{ n: number }[]>`
      select count(*)::int as n from messages where tenant_id = ${tenant}`;
    return row!.n;
  };

  try {
    const ts = await startThreadstore(pg.url, embeddings, overrides);
    process.stderr.write('seeding...\n');
    const corpus = await seedCorpus(ts, sql);
    const mainTenant = corpus.tenant;
    const body = (conversation: string) =>
      JSON.stringify({ conversation_id: conversation, role: 'user', content: 'hello '.repeat(20) });
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(Math.random() * xs.length)]!;
    const listPath = `/v1/messages?conversation_id=${corpus.listConversation}&limit=50`;
    const searchBody = (mode: string) =>
      JSON.stringify({ query: pick(corpus.queries), mode, limit: 10 });

    /** A write scenario: a fresh tenant, a fixed number of requests, then rows == 2xx × size. */
    async function writes(scenario: string, connections: number, size: number, amount: number) {
      const tenant = await createTenant(ts.base, `${scenario} ${connections}`);
      const path = size === 1 ? '/v1/messages' : '/v1/messages/batch';
      const payload =
        size === 1
          ? body('one-conversation')
          : JSON.stringify({
              messages: Array.from({ length: size }, (_, i) => ({
                conversation_id: `batch-${i % 4}`,
                role: i % 2 ? 'assistant' : 'user',
                content: `batch message ${i} `.repeat(6),
              })),
            });
      // A fixed amount, not a duration: autocannon then waits for every answer, so the 2xx
      // count can be compared with the rows stored, exactly.
      const run = await load(
        ts,
        { scenario },
        {
          url: `${ts.base}${path}`,
          method: 'POST',
          headers: jsonAuth(tenant.api_key),
          body: payload,
          connections,
          amount,
        },
      );
      const stored = await rowsOf(tenant.id);
      const expected = run.raw['2xx'] * size;
      check(
        `zero loss: ${scenario} at ${connections}`,
        stored === expected,
        `${run.raw['2xx']} answered 2xx × ${size} = ${expected}, ${stored} rows stored`,
      );
      await drained(`${scenario} at ${connections}`);
      return run;
    }

    /** Lets the embedding worker finish what the writes queued before the next scenario runs. */
    async function drained(after: string) {
      const { messages, seconds } = await embeddingBacklogDrained(sql);
      if (messages > 0) {
        process.stderr.write(
          `  embedding backlog after ${after}: ${messages} messages in ${seconds.toFixed(1)} s\n`,
        );
        backlogs.push({ after, messages, seconds });
      }
    }

    const reads = (scenario: string, connections: number, opts: Partial<autocannon.Options>) =>
      load(ts, { scenario }, { connections, duration: DURATION_S, ...opts } as autocannon.Options);

    /** Searches for a word of the corpus, a different one on each request. */
    const search = (scenario: string, connections: number, key: string, mode: string) =>
      reads(scenario, connections, {
        url: `${ts.base}/v1/search`,
        method: 'POST',
        headers: jsonAuth(key),
        requests: [{ setupRequest: (r) => ({ ...r, body: searchBody(mode) }) }],
      });

    for (const connections of ratiosOnly ? [] : LEVELS) {
      process.stderr.write(`\nscenarios at ${connections} connections\n`);
      const key = mainTenant.api_key;
      const scenarioRuns = [
        () => reads('livez', connections, { url: `${ts.base}/livez` }),
        () => writes('create', connections, 1, CREATES),
        () => writes('batch create (20)', connections, BATCH_SIZE, BATCHES),
        () =>
          reads('list 50', connections, { url: `${ts.base}${listPath}`, headers: jsonAuth(key) }),
        () =>
          reads('get by id', connections, {
            url: ts.base,
            headers: jsonAuth(key),
            requests: [
              {
                method: 'GET',
                setupRequest: (r) => ({ ...r, path: `/v1/messages/${pick(corpus.ids)}` }),
              },
            ],
          }),
        () => search('full-text search', connections, key, 'fulltext'),
        () => search('hybrid search', connections, key, 'hybrid'),
        () => mixed(connections, key),
      ];
      for (const scenario of scenarioRuns) runs.push(strip(await scenario()));
    }

    /** 80% reads, 20% writes: each connection cycles through four reads and one create. */
    async function mixed(connections: number, key: string) {
      let created = 0;
      const tenantBefore = await rowsOf(mainTenant.id);
      const run = await load(
        ts,
        { scenario: 'mixed 80/20' },
        {
          url: ts.base,
          headers: jsonAuth(key),
          connections,
          amount: MIXED,
          requests: mixedRequests(corpus, () => created++),
        },
      );
      const stored = (await rowsOf(mainTenant.id)) - tenantBefore;
      check(
        `zero loss: mixed 80/20 at ${connections}`,
        stored === created,
        `${created} creates answered 201, ${stored} rows stored`,
      );
      await drained(`mixed 80/20 at ${connections}`);
      return run;
    }

    for (const run of runs) {
      check(
        `no errors: ${run.scenario} at ${run.connections}`,
        run.non2xx === 0 && run.errors === 0 && run.timeouts === 0,
        `${run.non2xx} non-2xx, ${run.errors} errors, ${run.timeouts} timeouts`,
      );
    }

    if (!ratiosOnly) await rateLimitAccuracy(ts, rowsOf);
    const ratios = await baselineRounds(ts, pg.url, mainTenant, listPath);
    const middleware = withMiddleware
      ? await middlewareCosts(ts, pg.url, embeddings, corpus, listPath)
      : [];

    const results: BenchResults = {
      version: 1,
      date: new Date().toISOString(),
      commit: gitCommit(),
      quick,
      ...(Object.keys(overrides).length > 0 ? { settings: overrides } : {}),
      machine: await machine(sql),
      runs,
      ratios,
      middleware,
      embeddingBacklogs: backlogs,
      checks,
      passed: checks.every((c) => c.ok),
    };
    console.log(renderMarkdown(results));
    if (!ratiosOnly) {
      const dir = join(ROOT, 'bench', 'results');
      mkdirSync(dir, { recursive: true });
      const name = `${results.date.slice(0, 10)}-${results.commit}${quick ? '-quick' : ''}`;
      const file = join(dir, name);
      writeFileSync(`${file}.json`, `${JSON.stringify(results, null, 2)}\n`);
      writeFileSync(`${file}.svg`, renderSvg(results));
      process.stderr.write(`\nresults: ${file}.json\nchart:   ${file}.svg\n`);
    }
    if (!results.passed) process.exitCode = 1;
  } finally {
    await sql.end();
    await cleanup();
  }
}

/** A tenant budget of 1,000 writes a minute under 128 connections admits exactly 1,000. */
async function rateLimitAccuracy(ts: ServerProcess, rowsOf: (tenant: string) => Promise<number>) {
  const tenant = await createTenant(ts.base, 'rate limited');
  await api(ts.base, 'PATCH', `/v1/admin/tenants/${tenant.id}`, ADMIN_KEY, {
    rate_limit_write_per_minute: RATE_LIMIT_BUDGET,
  });
  let admitted = 0;
  let refused = 0;
  let withRetryAfter = 0;
  await load(
    ts,
    { scenario: 'rate limit 1000/min' },
    {
      url: `${ts.base}/v1/messages`,
      headers: jsonAuth(tenant.api_key),
      connections: 128,
      amount: RATE_LIMIT_BUDGET * 3,
      requests: [
        {
          method: 'POST',
          body: JSON.stringify({ conversation_id: 'limited', role: 'user', content: 'x' }),
          onResponse: (status, _body, _ctx, headers) => {
            if (status === 201) admitted++;
            if (status === 429) {
              refused++;
              // An object of the response's headers, names as the server sent them.
              const names = Object.keys(headers as Record<string, string>);
              if (names.some((name) => name.toLowerCase() === 'retry-after')) withRetryAfter++;
            }
          },
        },
      ],
    },
  );
  const stored = await rowsOf(tenant.id);
  check(
    'rate limit: exactly the budget admitted',
    admitted === RATE_LIMIT_BUDGET && stored === RATE_LIMIT_BUDGET,
    `budget ${RATE_LIMIT_BUDGET}: ${admitted} answered 201, ${stored} rows stored`,
  );
  check(
    'rate limit: the rest refused with Retry-After',
    refused === RATE_LIMIT_BUDGET * 2 && withRetryAfter === refused,
    `${refused} answered 429, ${withRetryAfter} of them with Retry-After`,
  );
}

/**
 * Paired rounds against the baseline on one database, alternating which goes first, so the
 * machine's drift between rounds falls on both sides of each ratio.
 */
async function baselineRounds(
  ts: ServerProcess,
  databaseUrl: string,
  tenant: Tenant,
  listPath: string,
): Promise<Ratio[]> {
  // Creates go to a tenant of their own, so that the hundreds of thousands of messages they
  // add do not weigh on the main tenant's reads in the middleware rounds that follow.
  const writer = await createTenant(ts.base, 'paired rounds');
  const baseline = await startBaseline(
    databaseUrl,
    { [tenant.api_key]: tenant.id, [writer.api_key]: writer.id },
    true,
  );
  process.stderr.write(`\n${ROUNDS} paired rounds against the baseline at 128 connections\n`);
  // One conversation for every create: the worst case for per-conversation bookkeeping.
  const conversation = 'ratio-create';
  await api(
    ts.base,
    'POST',
    '/v1/messages',
    writer.api_key,
    {
      conversation_id: conversation,
      role: 'user',
      content: 'first',
    },
    201,
  );
  const scenarios = {
    create: (s: ServerProcess): autocannon.Options => ({
      url: `${s.base}/v1/messages`,
      method: 'POST',
      headers: jsonAuth(writer.api_key),
      body: JSON.stringify({
        conversation_id: conversation,
        role: 'user',
        content: 'hello '.repeat(20),
      }),
    }),
    'list 50': (s: ServerProcess): autocannon.Options => ({
      url: `${s.base}${listPath}`,
      headers: jsonAuth(tenant.api_key),
    }),
  };
  const ratios: Ratio[] = [];
  for (const [scenario, request] of Object.entries(scenarios)) {
    const rounds: Ratio['rounds'] = (
      await pairedRounds(ts, baseline, {
        scenario,
        rounds: ROUNDS,
        seconds: RATIO_DURATION_S,
        warmUpS: WARM_UP_S,
        connections: 128,
        request,
        onRun: (run) => runs.push(run),
      })
    ).map(({ a: { run: t }, b: { run: b } }) => ({
      threadstore: t,
      baseline: b,
      rpsRatio: t.rps / b.rps,
      p99Ratio: t.latency.p99 / Math.max(b.latency.p99, 1),
    }));
    const goal = GOALS[scenario as keyof typeof GOALS];
    const medianRpsRatio = median(rounds.map((r) => r.rpsRatio));
    const medianP99Ratio = median(rounds.map((r) => r.p99Ratio));
    ratios.push({
      scenario,
      connections: 128,
      rounds,
      medianRpsRatio,
      medianP99Ratio,
      goalRps: goal.rps,
      goalP99: goal.p99,
      met: medianRpsRatio >= goal.rps && medianP99Ratio <= goal.p99,
    });
  }
  await baseline.stop();
  return ratios;
}

/** Each piece of middleware off through configuration, paired with threadstore as shipped. */
async function middlewareCosts(
  ts: ServerProcess,
  databaseUrl: string,
  embeddings: Embeddings,
  corpus: Corpus,
  listPath: string,
): Promise<MiddlewareCost[]> {
  const rounds = Math.max(3, Math.floor(ROUNDS / 2) + 1);
  const reader = corpus.tenant;
  // As in the paired rounds, creates go to a tenant of their own.
  const writer = await createTenant(ts.base, 'middleware rounds');
  const costs: MiddlewareCost[] = [];
  for (const variant of middlewareVariants) {
    process.stderr.write(`\nmiddleware: ${variant.name} (${variant.description})\n`);
    const off = await startThreadstore(
      databaseUrl,
      embeddings,
      { ...overrides, ...variant.env },
      variant.name,
    );
    for (const scenario of variant.scenarios ?? (['create', 'list'] as const)) {
      const opts = (s: ServerProcess): autocannon.Options =>
        scenario === 'mixed 80/20'
          ? {
              url: s.base,
              headers: jsonAuth(reader.api_key),
              requests: mixedRequests(corpus, () => {}),
            }
          : scenario === 'create'
            ? {
                url: `${s.base}/v1/messages`,
                method: 'POST',
                headers: jsonAuth(writer.api_key),
                body: JSON.stringify({
                  conversation_id: 'middleware',
                  role: 'user',
                  content: 'hello '.repeat(20),
                }),
              }
            : { url: `${s.base}${listPath}`, headers: jsonAuth(reader.api_key) };
      // The variant's server has just started: both warm up first, as in the paired rounds.
      const paired = await pairedRounds(ts, off, {
        scenario,
        rounds,
        seconds: RATIO_DURATION_S,
        warmUpS: WARM_UP_S,
        connections: 128,
        request: opts,
      });
      const gains = paired.map(({ a, b }) => b.run.rps / a.run.rps);
      const p99s = paired.map(({ a, b }) => b.run.latency.p99 / Math.max(a.run.latency.p99, 1));
      costs.push({
        variant: variant.name,
        description: variant.description,
        scenario,
        connections: 128,
        medianRpsGain: median(gains),
        medianP99Ratio: median(p99s),
        rounds,
      });
    }
    await off.stop();
  }
  return costs;
}

function gitCommit(): string {
  const r = Bun.spawnSync(['git', 'rev-parse', '--short', 'HEAD'], { cwd: ROOT });
  const dirty = Bun.spawnSync(['git', 'status', '--porcelain', '--', 'src'], { cwd: ROOT });
  const sha = r.stdout.toString().trim() || 'unknown';
  return dirty.stdout.toString().trim() ? `${sha}-dirty` : sha;
}

async function machine(sql: postgres.Sql): Promise<BenchResults['machine']> {
  const [version] = await sql<{ v: string }[]>`select current_setting('server_version') as v`;
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    bun: Bun.version,
    postgres: version?.v ?? 'unknown',
  };
}

if (import.meta.main) {
  if (args.includes('--help') || args.includes('-h')) console.log(USAGE);
  else await main();
}
