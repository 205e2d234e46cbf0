import { describe, expect, test } from 'bun:test';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { median, medianRun, renderMarkdown, renderSvg } from '../../bench/report';
import type { BenchResults, Run } from '../../bench/types';

const ODD = 'a<&>b';

function run(target: string, scenario: string, connections: number, rps: number, p99: number): Run {
  return {
    target,
    scenario,
    connections,
    durationS: 10,
    requests: rps * 10,
    rps,
    latency: { p50: p99 / 4, p90: p99 / 2, p99, max: p99 * 2 },
    non2xx: 0,
    errors: 1,
    timeouts: 2,
    peakRssMiB: 80,
  };
}

// create@128: three rounds listed out of order, the median (1000 req/s) has a p99 of 12.5 ms.
const ours = [1100, 900, 1000].map((rps) =>
  run('threadstore', 'create', 128, rps, rps === 1000 ? 12.5 : 77),
);
const base = [1300, 1200, 1250].map((rps) => run('baseline', 'create', 128, rps, 10));

function results(): BenchResults {
  return {
    version: 1,
    date: '2026-11-25',
    commit: 'abc1234',
    quick: false,
    machine: {
      cpus: 8,
      cpuModel: 'Test CPU',
      memoryGiB: 16,
      os: 'Linux 6.8',
      bun: '1.4.5',
      postgres: '17.2',
    },
    runs: [
      ...ours,
      ...base,
      run('threadstore', 'list', 128, 700, 30),
      run('threadstore', 'list', 128, 500, 40),
      run('threadstore', 'create', 256, 1500, 20),
      run('threadstore', ODD, 128, 300, 5),
      run('threadstore-no-auth', 'create', 128, 5000, 1),
    ],
    ratios: [
      {
        scenario: 'create',
        connections: 128,
        rounds: ours.map((t, i) => ({
          threadstore: t,
          baseline: base[i]!,
          rpsRatio: t.rps / base[i]!.rps,
          p99Ratio: 1.2,
        })),
        medianRpsRatio: 0.83,
        medianP99Ratio: 1.2,
        goalRps: 0.8,
        goalP99: 1.5,
        met: true,
      },
      {
        scenario: 'list',
        connections: 128,
        rounds: [
          {
            threadstore: run('threadstore', 'list', 128, 500, 40),
            baseline: run('baseline', 'list', 128, 1000, 10),
            rpsRatio: 0.5,
            p99Ratio: 4,
          },
        ],
        medianRpsRatio: 0.5,
        medianP99Ratio: 4,
        goalRps: 0.8,
        goalP99: 1.5,
        met: false,
      },
    ],
    middleware: [
      {
        variant: 'no-auth',
        description: 'API key check',
        scenario: 'create',
        connections: 128,
        medianRpsGain: 1.25,
        medianP99Ratio: 0.9,
        rounds: 3,
      },
      {
        variant: 'no-request-id',
        description: 'request ids',
        scenario: 'create',
        connections: 128,
        medianRpsGain: 0.97,
        medianP99Ratio: 1,
        rounds: 3,
      },
    ],
    checks: [
      { name: 'no errors', ok: true, detail: '0 errors' },
      { name: 'memory', ok: false, detail: 'peak 900 MiB' },
    ],
    passed: false,
  };
}

/** The row of a Markdown table whose first two cells are these. */
function row(markdown: string, section: string, scenario: string, connections: number): string {
  const part = markdown.split('\n## ').find((s) => s.startsWith(section)) ?? '';
  return part.split('\n').find((l) => l.startsWith(`| ${scenario} | ${connections} |`)) ?? '';
}

describe('medians across rounds', () => {
  test('median of numbers averages the middle pair of an even count', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  test('the median run is a real run, the lower middle one for an even count', () => {
    expect(medianRun(ours)?.rps).toBe(1000);
    expect(medianRun([run('t', 's', 1, 700, 1), run('t', 's', 1, 500, 1)])?.rps).toBe(500);
    expect(medianRun([])).toBeUndefined();
  });
});

describe('Markdown report', () => {
  const md = renderMarkdown(results());

  test('the header names date, commit, machine, kind and verdict', () => {
    const [title, , machine] = md.split('\n');
    expect(title).toBe('# threadstore bench 2026-11-25 · abc1234 · full · FAILED');
    expect(machine).toBe('8 × Test CPU, 16 GiB, Linux 6.8, Bun 1.4.5, PostgreSQL 17.2');
  });

  test('the runs table shows the median round of threadstore only, with its own percentiles', () => {
    expect(row(md, 'threadstore runs', 'create', 128)).toBe(
      '| create | 128 | 3 | 1,000 | 3.13 | 6.25 | 12.5 | 25.0 | 0 | 3 | 80 |',
    );
    expect(row(md, 'threadstore runs', 'list', 128)).toContain('| 2 | 500 |');
    expect(row(md, 'threadstore runs', 'create', 256)).toContain('| 1,500 |');
    expect(md).toContain('median req/s');
    expect(md).not.toContain('5,000');
  });

  test('a scenario name cannot break the table or turn into HTML', () => {
    expect(row(md, 'threadstore runs', 'a&lt;&>b', 128)).toContain('| 300 |');
    const piped = results();
    piped.runs = [run('threadstore', 'x|y', 128, 1, 1)];
    expect(renderMarkdown(piped)).toContain('| x\\|y | 128 |');
  });

  test('the ratio table gives median req/s of both sides, ratios, goals and whether they are met', () => {
    expect(row(md, 'Against the baseline', 'create', 128)).toBe(
      '| create | 128 | 1,000 | 1,250 | 0.83× | 1.20× | rps ≥ 0.80×, p99 ≤ 1.50× | ✓ | 3 |',
    );
    expect(row(md, 'Against the baseline', 'list', 128)).toContain('| 0.50× | 4.00× |');
    expect(row(md, 'Against the baseline', 'list', 128)).toContain('| ✗ | 1 |');
  });

  test('middleware costs read as percentages, and a negative gain as noise', () => {
    expect(md).toContain('| no-auth | API key check | create | 128 | costs ~25% | 0.90× | 3 |');
    expect(md).toContain('| within noise (0.97×) |');
  });

  test('checks are listed with their outcome', () => {
    expect(md).toContain('- ✓ no errors: 0 errors');
    expect(md).toContain('- ✗ memory: peak 900 MiB');
  });

  test('sections without data are left out', () => {
    const onlyRuns = { ...results(), ratios: [], middleware: [], checks: [] };
    const md1 = renderMarkdown(onlyRuns);
    expect(md1).toContain('## threadstore runs');
    expect(md1).not.toContain('## Against');
    expect(md1).not.toContain('## What each');
    expect(md1).not.toContain('## Checks');
    expect(renderMarkdown({ ...onlyRuns, runs: [] })).not.toContain('##');
  });
});

/** Opening and closing tags nest properly, and every & starts an entity. */
function wellFormed(svg: string): boolean {
  const stack: string[] = [];
  for (const [, close, name, self] of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (self) continue;
    if (!close) stack.push(name!);
    else if (stack.pop() !== name) return false;
  }
  return stack.length === 0 && !/&(?!(amp|lt|gt|quot|apos);)/.test(svg);
}

describe('SVG chart', () => {
  const svg = renderSvg(results());

  test('is one well-formed svg element with every scenario and connection level', () => {
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(wellFormed(svg)).toBe(true);
    for (const label of ['>create<', '>list<', '128 connections', '256 connections']) {
      expect(svg).toContain(label);
    }
    expect(svg).not.toMatch(/<script|@import|href=/);
  });

  test('escapes scenario names for XML', () => {
    expect(svg).toContain('a&lt;&amp;&gt;b');
    expect(svg).not.toContain(ODD);
  });

  test('labels bars with medians of rounds and the median ratio', () => {
    expect(svg).toContain('>1,000 (0.83×)<');
    expect(svg).toContain('>1,250<');
    // p99 is the median of the rounds' p99s (12.5, 77, 77), not the p99 of the median-rps run.
    expect(svg).toContain('>77.0 (1.20×)<');
  });

  test('marks a missed goal in red', () => {
    expect(svg).toMatch(/fill="#c53030">500 \(0\.50×\)</);
    expect(svg).not.toMatch(/fill="#c53030">1,000/);
  });

  test('still renders a file without runs', () => {
    const empty = renderSvg({ ...results(), runs: [], ratios: [] });
    expect(wellFormed(empty)).toBe(true);
    expect(empty).toContain('No threadstore runs');
  });
});

describe('command line', () => {
  test('prints Markdown and writes the SVG next to the results file', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'bench-report-')), 'r.json');
    writeFileSync(file, JSON.stringify(results()));
    const cli = Bun.spawnSync([
      process.execPath,
      join(import.meta.dir, '../../bench/report.ts'),
      file,
    ]);
    expect(cli.exitCode).toBe(0);
    expect(cli.stdout.toString()).toStartWith('# threadstore bench');
    const svgPath = file.replace(/\.json$/, '.svg');
    expect(cli.stderr.toString().trim()).toBe(svgPath);
    expect(existsSync(svgPath)).toBe(true);
    expect(readFileSync(svgPath, 'utf8')).toStartWith('<svg');
  });
});
