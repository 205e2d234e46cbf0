// Paired rounds: two servers loaded in turn with the same requests, alternating which goes first,
// so the machine's drift between rounds falls on both sides of each round's ratio; this machine's
// speed drifts too much between runs for two separate runs to say anything. The bench's rounds
// against the baseline and with each piece of middleware off, and bench/ab.ts, all measure
// through this one loop.
import type autocannon from 'autocannon';
import { cpuOf, load, type ServerProcess } from './lib';
import type { Run } from './types';

/** One server's measured run in a round, and the server CPU it spent per request (ms). */
export interface PairedRun {
  run: Run;
  cpuMsPerRequest: number;
}

/** The two servers' runs of one round. */
export interface PairedRound {
  a: PairedRun;
  b: PairedRun;
}

export interface PairedRoundsOptions {
  /** The scenario's name: each run's label unless `label` says otherwise. */
  scenario: string;
  /** How many rounds; A goes first in the even ones (0, 2, …), B in the odd ones. */
  rounds: number;
  /** Length of each measured run, in seconds. */
  seconds: number;
  /** Length of each server's warm-up run before the first round, in seconds (not counted). */
  warmUpS: number;
  connections: number;
  /** The scenario's requests against one server (autocannon options without the load's size). */
  request: (server: ServerProcess) => autocannon.Options;
  /** The label of a round's runs (0-based round); the scenario's name by default. */
  label?: (round: number) => string;
  /** Called with every measured run in the order they ran, warm-ups left out. */
  onRun?: (run: Run) => void;
}

/** Loads `a` and `b` in alternating order for `rounds` rounds, after one warm-up run each. */
export async function pairedRounds(
  a: ServerProcess,
  b: ServerProcess,
  options: PairedRoundsOptions,
): Promise<PairedRound[]> {
  const measure = async (server: ServerProcess, scenario: string, seconds: number) => {
    const before = cpuOf(server.pid);
    const { raw: _raw, ...run } = await load(
      server,
      { scenario },
      { ...options.request(server), connections: options.connections, duration: seconds },
    );
    return { run, cpuMsPerRequest: (cpuOf(server.pid) - before) / run.requests };
  };
  // Both servers compile their hot paths before anything is counted: the ratio is of steady
  // states, not of how fast each warms up.
  for (const server of [a, b]) {
    await measure(server, `${options.scenario} warm-up`, options.warmUpS);
  }
  const rounds: PairedRound[] = [];
  for (let round = 0; round < options.rounds; round++) {
    const got = new Map<ServerProcess, PairedRun>();
    for (const server of round % 2 === 0 ? [a, b] : [b, a]) {
      const measured = await measure(
        server,
        options.label?.(round) ?? options.scenario,
        options.seconds,
      );
      options.onRun?.(measured.run);
      got.set(server, measured);
    }
    rounds.push({ a: got.get(a)!, b: got.get(b)! });
  }
  return rounds;
}
