// Soak run before a release (not in CI): the mixed workload at 128 connections for 5 minutes
// against the compiled binary. Passes when no request failed, the server's RSS at the end is
// within 10% of its RSS after the first minute, and its database connections did not grow.
// Usage: bun run soak [--minutes N]
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import autocannon from 'autocannon';
import postgres from 'postgres';
import { cleanup, ensureBinary, ROOT, startInfrastructure, startThreadstore } from './lib';
import { mixedRequests, seedCorpus } from './scenarios';

const args = process.argv.slice(2);
const minutesFlag = args.indexOf('--minutes');
const MINUTES = minutesFlag >= 0 ? Number(args[minutesFlag + 1]) : 5;
const CONNECTIONS = 128;
const SAMPLE_MS = 5_000;
const RSS_GROWTH_LIMIT = 1.1;

interface Sample {
  second: number;
  rssMiB: number;
  dbConnections: number;
  rps: number;
}

ensureBinary(args.includes('--rebuild'));
const { pg, embeddings } = await startInfrastructure();
const sql = postgres(pg.url, { max: 1 });
let failed = false;
try {
  const ts = await startThreadstore(pg.url, embeddings);
  process.stderr.write('seeding...\n');
  const corpus = await seedCorpus(ts, sql);
  const connections = async () =>
    (
      await sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity where application_name = 'threadstore'`
    )[0]!.n;

  const samples: Sample[] = [];
  const started = Date.now();
  let lastSecond = 0;
  let created = 0;
  let requestsSinceSample = 0;
  const sampler = setInterval(async () => {
    const second = Math.round((Date.now() - started) / 1000);
    const sample: Sample = {
      second,
      rssMiB: Math.round(ts.rssMiB() * 10) / 10,
      dbConnections: await connections(),
      rps: Math.round(requestsSinceSample / (second - lastSecond || 1)),
    };
    requestsSinceSample = 0;
    lastSecond = second;
    samples.push(sample);
    process.stderr.write(
      `  ${second}s: ${sample.rps} req/s, rss ${sample.rssMiB} MiB, ${sample.dbConnections} db connections\n`,
    );
  }, SAMPLE_MS);

  const result = await new Promise<autocannon.Result>((resolve, reject) => {
    const instance = autocannon(
      {
        url: ts.base,
        headers: {
          authorization: `Bearer ${corpus.tenant.api_key}`,
          'content-type': 'application/json',
        },
        connections: CONNECTIONS,
        duration: MINUTES * 60,
        requests: mixedRequests(corpus, () => created++),
      },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
    instance.on('response', () => requestsSinceSample++);
  });
  clearInterval(sampler);

  // RSS after the first minute (or the first sample of a shorter run) against the last one.
  const firstMinute = samples.find((s) => s.second >= 60) ?? samples[0]!;
  const last = samples.at(-1)!;
  const early = samples.filter((s) => s.second <= firstMinute.second);
  const late = samples.filter((s) => s.second > last.second - 60);
  const maxEarly = Math.max(...early.map((s) => s.dbConnections));
  const maxLate = Math.max(...late.map((s) => s.dbConnections));
  const checks = [
    {
      name: 'no error responses',
      ok: result.non2xx === 0 && result.errors === 0 && result.timeouts === 0,
      detail: `${result.requests.total} requests: ${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts`,
    },
    {
      name: 'RSS flat',
      ok: last.rssMiB <= firstMinute.rssMiB * RSS_GROWTH_LIMIT,
      detail: `${firstMinute.rssMiB} MiB at ${firstMinute.second}s, ${last.rssMiB} MiB at ${last.second}s (${((last.rssMiB / firstMinute.rssMiB - 1) * 100).toFixed(1)}%)`,
    },
    {
      name: 'database connections flat',
      ok: maxLate <= maxEarly,
      detail: `at most ${maxEarly} in the first minute, ${maxLate} in the last`,
    },
  ];
  const report = {
    date: new Date().toISOString(),
    minutes: MINUTES,
    connections: CONNECTIONS,
    rps: Math.round(result.requests.total / result.duration),
    latency: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max },
    creates: created,
    samples,
    checks,
  };
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `soak-${report.date.slice(0, 19).replace(/:/g, '')}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(
    `soak: ${MINUTES} min at ${CONNECTIONS} connections, ${report.rps} req/s, p50 ${report.latency.p50} ms, p99 ${report.latency.p99} ms`,
  );
  for (const c of checks) console.log(`${c.ok ? '✓' : '✗'} ${c.name}: ${c.detail}`);
  console.log(`results: ${file}`);
  failed = checks.some((c) => !c.ok);
} finally {
  await sql.end();
  await cleanup();
}
if (failed) process.exit(1);
