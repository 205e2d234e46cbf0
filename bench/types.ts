// The shape of a bench results file (bench/results/<date>-<commit>.json). The runner writes it;
// the report renders it as a Markdown table and an SVG chart.

/** Latency percentiles of one autocannon run, in milliseconds. */
export interface Latency {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

/** One autocannon run of one scenario against one server. */
export interface Run {
  /** threadstore, baseline, or a threadstore variant with one piece of middleware off. */
  target: string;
  scenario: string;
  connections: number;
  durationS: number;
  requests: number;
  rps: number;
  latency: Latency;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** Highest resident set size of the server process seen during the run, MiB. */
  peakRssMiB: number;
}

/** Paired threadstore/baseline rounds of one scenario and the median of their ratios. */
export interface Ratio {
  scenario: string;
  connections: number;
  rounds: { threadstore: Run; baseline: Run; rpsRatio: number; p99Ratio: number }[];
  medianRpsRatio: number;
  medianP99Ratio: number;
  /** Goals: throughput at least goalRps of the baseline's, p99 at most goalP99 times. */
  goalRps: number;
  goalP99: number;
  met: boolean;
}

/** What one piece of middleware costs: threadstore with it off against threadstore with it on. */
export interface MiddlewareCost {
  variant: string;
  description: string;
  scenario: string;
  connections: number;
  /** Median over rounds of rps(off) / rps(on): 1.10 means the piece costs about 10%. */
  medianRpsGain: number;
  medianP99Ratio: number;
  rounds: number;
}

/** A check whose failure fails the bench. */
export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export interface BenchResults {
  version: 1;
  date: string;
  commit: string;
  quick: boolean;
  /** threadstore's configuration set on the command line (NAME=value), if any. */
  settings?: Record<string, string>;
  machine: {
    cpus: number;
    cpuModel: string;
    memoryGiB: number;
    os: string;
    bun: string;
    postgres: string;
  };
  runs: Run[];
  ratios: Ratio[];
  middleware: MiddlewareCost[];
  /** Messages the embedding worker had to catch up on after each write scenario, and how long. */
  embeddingBacklogs?: { after: string; messages: number; seconds: number }[];
  checks: Check[];
  passed: boolean;
}
