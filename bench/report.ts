// Renders a bench results file (bench/types.ts) twice: Markdown for a terminal or a pull request,
// and an SVG chart that a browser shows without anything else (no fonts, scripts or styles to load).
// Usage: bun bench/report.ts [results.json]   (default: the newest bench/results/*.json)
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BenchResults, Ratio, Run } from './types';

const THREADSTORE = 'threadstore';
const BASELINE = 'baseline';

/** The middle value; the mean of the two middle ones for an even count; NaN for none. */
export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * The run with the median req/s. For an even count the lower of the two middle runs: a table row
 * should be one run that really happened (its percentiles belong together), and never the flattering one.
 */
export function medianRun(runs: Run[]): Run | undefined {
  return [...runs].sort((a, b) => a.rps - b.rps)[(runs.length - 1) >> 1];
}

const key = (scenario: string, connections: number) => `${scenario}\u0000${connections}`;

/** Runs of one target grouped by scenario and connections, in the order the file lists them. */
function groupRuns(runs: Run[], target: string): Map<string, Run[]> {
  const groups = new Map<string, Run[]>();
  for (const run of runs.filter((r) => r.target === target)) {
    const k = key(run.scenario, run.connections);
    groups.set(k, [...(groups.get(k) ?? []), run]);
  }
  return groups;
}

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : int(n));
const times = (n: number) => `${n.toFixed(2)}×`;
const mark = (ok: boolean) => (ok ? '✓' : '✗');

/** A cell must not end its row early (|, newline) nor be taken for HTML by a Markdown viewer (<). */
function cell(text: string): string {
  return text
    .replace(/\|/g, '\\|')
    .replace(/</g, '&lt;')
    .replace(/\s*\n\s*/g, ' ');
}

/** A Markdown table; `head` is comma-separated, `align` one letter per column: l, c or r. */
function table(align: string, head: string, rows: string[][]): string {
  const titles = head.split(', ');
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`;
  const rule = titles.map((_, i) => ({ r: '---:', c: ':---:' })[align[i] ?? ''] ?? '---');
  return [line(titles), line(rule), ...rows.map(line)].join('\n');
}

function machineLine({ machine: m }: BenchResults): string {
  return `${m.cpus} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}, Bun ${m.bun}, PostgreSQL ${m.postgres}`;
}

/** Whether a median p99 or rps ratio misses its goal (a red figure in the chart). */
const missesRps = (r: Ratio) => r.medianRpsRatio < r.goalRps;
const missesP99 = (r: Ratio) => r.medianP99Ratio > r.goalP99;

/** Rounds on this machine drift by up to ~10%: closer to 1 than this is noise. */
const NOISE = 0.1;

function middlewareCost(gain: number): string {
  if (Math.abs(gain - 1) <= NOISE) return `within noise (${times(gain)})`;
  // Off and faster: what the piece costs. Off and slower: what it saves (a cache, say).
  return gain > 1
    ? `costs ~${Math.round((gain - 1) * 100)}%`
    : `saves ~${Math.round((1 / gain - 1) * 100)}% (${times(gain)} when off)`;
}

/** A titled table with a line on how to read it. */
function section(title: string, note: string, align: string, head: string, rows: string[][]) {
  return ['', `## ${title}`, '', note, '', table(align, head, rows)];
}

/** The Markdown report: header, then only the sections the file has data for. */
export function renderMarkdown(results: BenchResults): string {
  const kind = results.quick ? 'quick' : 'full';
  const verdict = results.passed ? 'passed' : 'FAILED';
  const out = [`# threadstore bench ${results.date} · ${results.commit} · ${kind} · ${verdict}`];
  out.push('', cell(machineLine(results)));
  if (results.settings) {
    const set = Object.entries(results.settings).map(([k, v]) => `${k}=${v}`);
    out.push('', cell(`threadstore configured with ${set.join(' ')}`));
  }

  const groups = [...groupRuns(results.runs, THREADSTORE).values()];
  if (groups.length > 0) {
    const rows = groups.map((runs) => {
      const r = medianRun(runs)!;
      const { p50, p90, p99, max } = r.latency;
      return [cell(r.scenario), `${r.connections}`, `${runs.length}`, int(r.rps)]
        .concat([p50, p90, p99, max].map(ms))
        .concat([int(r.non2xx), int(r.errors + r.timeouts), r.peakRssMiB.toFixed(0)]);
    });
    const note =
      'Where a scenario ran in several rounds, its row is the round with the median req/s (the lower middle one for an even count).';
    const head =
      'Scenario, Conn, Rounds, req/s, p50 ms, p90 ms, p99 ms, max ms, non-2xx, errors+timeouts, peak RSS MiB';
    out.push(...section('threadstore runs', note, 'lrrrrrrrrrr', head, rows));
  }

  if (results.ratios.length > 0) {
    const rows = results.ratios.map((r) => [
      cell(r.scenario),
      `${r.connections}`,
      int(median(r.rounds.map((x) => x.threadstore.rps))),
      int(median(r.rounds.map((x) => x.baseline.rps))),
      times(r.medianRpsRatio),
      times(r.medianP99Ratio),
      `rps ≥ ${times(r.goalRps)}, p99 ≤ ${times(r.goalP99)}`,
      mark(r.met),
      `${r.rounds.length}`,
    ]);
    const note =
      'Ratios are medians of the per-round ratios; req/s columns are medians of the rounds.';
    const head =
      'Scenario, Conn, threadstore req/s, baseline req/s, rps ratio, p99 ratio, Goal, Met, Rounds';
    out.push(...section('Against the baseline', note, 'lrrrrrlcr', head, rows));
  }

  if (results.middleware.length > 0) {
    const rows = results.middleware.map((m) => [
      ...[m.variant, m.description, m.scenario].map(cell),
      `${m.connections}`,
      middlewareCost(m.medianRpsGain),
      times(m.medianP99Ratio),
      `${m.rounds}`,
    ]);
    const note = 'Median over rounds of req/s with the piece off ÷ req/s with it on.';
    const head = 'Variant, Off, Scenario, Conn, Throughput, p99 off/on, Rounds';
    out.push(...section('What each piece of middleware costs', note, 'lllrlrr', head, rows));
  }

  const backlogs = results.embeddingBacklogs ?? [];
  if (backlogs.length > 0) {
    out.push('', '## Embedding backlog after writes', '');
    out.push(
      'Drained before the next scenario ran, so no read scenario competes with the worker.',
      '',
    );
    for (const b of backlogs) {
      const rate = b.seconds > 0 ? Math.round(b.messages / b.seconds) : b.messages;
      out.push(
        `- after ${cell(b.after)}: ${b.messages} messages in ${b.seconds.toFixed(1)} s (${rate}/s)`,
      );
    }
  }
  if (results.checks.length > 0) {
    out.push('', '## Checks', '');
    for (const c of results.checks) out.push(`- ${mark(c.ok)} ${cell(c.name)}: ${cell(c.detail)}`);
  }
  return `${out.join('\n')}\n`;
}

/** One scenario at one connection level as the chart draws it: medians of its rounds. */
interface ChartRow {
  scenario: string;
  connections: number;
  ours: { rps: number; p99: number };
  base?: { rps: number; p99: number };
  ratio?: Ratio;
}

const summarise = (runs: Run[]) => ({
  rps: median(runs.map((r) => r.rps)),
  p99: median(runs.map((r) => r.latency.p99)),
});

/** Paired rounds win over loose runs: they are what the ratios (and the goals) were computed from. */
function chartRows(results: BenchResults): ChartRow[] {
  const ours = groupRuns(results.runs, THREADSTORE);
  const base = groupRuns(results.runs, BASELINE);
  const ratios = new Map(results.ratios.map((r) => [key(r.scenario, r.connections), r]));
  const rows: ChartRow[] = [];
  for (const k of new Set([...ours.keys(), ...ratios.keys()])) {
    const ratio = ratios.get(k);
    const runs = ratio ? ratio.rounds.map((x) => x.threadstore) : ours.get(k)!;
    const baseRuns = ratio ? ratio.rounds.map((x) => x.baseline) : (base.get(k) ?? []);
    const { scenario, connections } = ratio ?? runs[0]!;
    const row: ChartRow = { scenario, connections, ours: summarise(runs), ratio };
    if (baseRuns.length > 0) row.base = summarise(baseRuns);
    rows.push(row);
  }
  return rows;
}

/** Text for XML content and attribute values alike. */
export function escapeXml(text: string): string {
  const entities: Record<string, string> = {
    '&': '&amp;',
    '<': '&lt;',
    '>': '&gt;',
    '"': '&quot;',
    "'": '&apos;',
  };
  return text.replace(/[&<>"']/g, (c) => entities[c]!);
}

const WIDTH = 1080;
const PAD = 20;
const LABEL_W = 190;
const PANEL_GAP = 30;
const PANEL_W = (WIDTH - 2 * PAD - LABEL_W - PANEL_GAP) / 2;
/** Room right of the longest bar for its figure, so figures never run into the next panel. */
const FIGURE_W = 110;
const BAR_H = 14;
const BAR_GAP = 3;
const ROW_GAP = 12;
const LABEL_CHARS = 28;
const OURS = '#2b6cb0';
const BASE = '#a0aec0';
const MISSED = '#c53030';
const INK = '#1a202c';

const round1 = (n: number) => Math.round(n * 10) / 10;
const rect = (x: number, y: number, w: number, h: number, fill: string) =>
  `<rect x="${round1(x)}" y="${round1(y)}" width="${round1(w)}" height="${h}" fill="${fill}"/>`;
const text = (x: number, y: number, size: number, body: string, extra = '') =>
  `<text x="${round1(x)}" y="${round1(y)}" font-size="${size}"${extra}>${escapeXml(body)}</text>`;
const BOLD = ' font-weight="bold"';

type Summary = ChartRow['ours'];
const PANELS = [
  { title: 'Throughput, req/s (longer is better)', value: (v: Summary) => v.rps, figure: int },
  { title: 'p99 latency, ms (shorter is better)', value: (v: Summary) => v.p99, figure: ms },
];
const panelX = (p: number) => PAD + LABEL_W + p * (PANEL_W + PANEL_GAP);

/** One scenario's bars in both panels, starting at `y`; returns the height it took. */
function drawRow(out: string[], row: ChartRow, y: number, scales: number[], striped: boolean) {
  const height = row.base ? 2 * BAR_H + BAR_GAP : BAR_H;
  // Stripes keep a long line of figures tied to its scenario name.
  if (striped)
    out.push(rect(PAD - 6, y - ROW_GAP / 2, WIDTH - 2 * PAD + 12, height + ROW_GAP, '#f4f6f8'));
  const name =
    row.scenario.length > LABEL_CHARS ? `${row.scenario.slice(0, LABEL_CHARS - 1)}…` : row.scenario;
  // A name cut short keeps its full text as a tooltip (an SVG <title> child).
  const tooltip = `<title>${escapeXml(row.scenario)}</title>`;
  out.push(text(PAD, y + height / 2 + 4, 12, name).replace('>', `>${tooltip}`));
  PANELS.forEach((panel, p) => {
    const bar = (by: number, value: number, fill: string, figure: string, figureFill = INK) => {
      const w = Math.max(1, value * scales[p]!);
      out.push(rect(panelX(p), by, w, BAR_H, fill));
      out.push(text(panelX(p) + w + 4, by + BAR_H - 3, 11, figure, ` fill="${figureFill}"`));
    };
    const ours = panel.value(row.ours);
    const r = row.ratio;
    const ratio = r
      ? [r.medianRpsRatio, r.medianP99Ratio][p]
      : row.base && ours / panel.value(row.base);
    const missed = r !== undefined && (p === 0 ? missesRps(r) : missesP99(r));
    const figure = panel.figure(ours) + (ratio === undefined ? '' : ` (${times(ratio)})`);
    bar(y, ours, OURS, figure, missed ? MISSED : INK);
    if (row.base)
      bar(y + BAR_H + BAR_GAP, panel.value(row.base), BASE, panel.figure(panel.value(row.base)));
  });
  return height;
}

/** The chart: per connection level, one row per scenario, throughput and p99 panels side by side. */
export function renderSvg(results: BenchResults): string {
  const rows = chartRows(results);
  const kind = results.quick ? 'quick' : 'full';
  const legend =
    'Bars: medians of rounds. (n×): threadstore ÷ baseline, median of per-round ratios; red: goal missed.';
  const out = [
    text(PAD, 30, 18, `threadstore bench · ${results.date} · ${results.commit} · ${kind}`, BOLD),
    text(PAD, 50, 12, machineLine(results)),
    rect(PAD, 62, 12, 12, OURS),
    text(PAD + 16, 72, 12, THREADSTORE),
    rect(PAD + 100, 62, 12, 12, BASE),
    text(PAD + 116, 72, 12, BASELINE),
    text(PAD + 200, 72, 12, legend),
    ...PANELS.map((panel, p) => text(panelX(p), 104, 13, panel.title, BOLD)),
  ];
  // One scale per panel across every row, so bars of 128 and 256 connections compare directly.
  const scales = PANELS.map((panel) => {
    const values = rows.flatMap((r) => (r.base ? [r.ours, r.base] : [r.ours]).map(panel.value));
    return (PANEL_W - FIGURE_W) / Math.max(1e-9, ...values);
  });

  let y = 120;
  if (rows.length === 0) out.push(text(PAD, (y += 20), 13, 'No threadstore runs in this file.'));
  const levels = [...new Set(rows.map((r) => r.connections))].sort((a, b) => a - b);
  for (const connections of levels) {
    out.push(text(PAD, (y += 18), 14, `${connections} connections`, BOLD));
    y += 10;
    rows
      .filter((r) => r.connections === connections)
      .forEach((row, i) => (y += drawRow(out, row, y, scales, i % 2 === 0) + ROW_GAP));
  }
  for (const p of [0, 1]) {
    const x = panelX(p);
    out.push(`<line x1="${x}" y1="112" x2="${x}" y2="${y - ROW_GAP / 2}" stroke="#718096"/>`);
  }
  const height = y + PAD;
  const font = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="${font}" fill="${INK}">`,
    rect(0, 0, WIDTH, height, '#ffffff'),
    ...out,
    '</svg>',
    '',
  ].join('\n');
}

/** The newest results file by modification time: names sort by date, but not within one day. */
function newestResults(): string {
  const dir = join(import.meta.dir, 'results');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => join(dir, f));
  if (files.length === 0) throw new Error(`no results file in ${dir}; run the bench first`);
  return files.reduce((a, b) => (statSync(b).mtimeMs > statSync(a).mtimeMs ? b : a));
}

if (import.meta.main) {
  const file = process.argv[2] ?? newestResults();
  const results = JSON.parse(readFileSync(file, 'utf8')) as BenchResults;
  if (results.version !== 1) throw new Error(`${file}: unknown results version ${results.version}`);
  const svgPath = `${file.replace(/\.json$/, '')}.svg`;
  writeFileSync(svgPath, renderSvg(results));
  process.stdout.write(renderMarkdown(results));
  console.error(svgPath);
}
