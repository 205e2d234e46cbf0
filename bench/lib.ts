// What the bench scripts share: the binary, a throwaway PostgreSQL and embedding server, server
// processes on 127.0.0.1 with their memory watched, and autocannon runs with a progress line.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { type PostgresCluster, startPostgres } from '../harness/postgres';
import type { Run } from './types';

export const ROOT = join(import.meta.dir, '..');
export const BINARY = join(ROOT, 'dist', 'threadstore');
export const ADMIN_KEY = 'bench-admin-key-0123456789';
export const EMBEDDING_DIMENSIONS = 64;
export const BUN = join(ROOT, 'node_modules', '.bin', 'bun');
const READY_TIMEOUT_MS = 30_000;
const RSS_SAMPLE_MS = 100;

const cleanups: (() => Promise<void> | void)[] = [];
let stopping = false;

/** Runs every registered cleanup, newest first; safe to call twice. */
export async function cleanup(): Promise<void> {
  if (stopping) return;
  stopping = true;
  for (const fn of cleanups.reverse()) {
    try {
      await fn();
    } catch (err) {
      console.error('cleanup:', err);
    }
  }
}

// An interrupted bench still stops what it started: no stray servers or clusters.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    process.stderr.write(`\n${signal}: stopping\n`);
    void cleanup().then(() => process.exit(130));
  });
}

/** Builds dist/threadstore unless it is already there and newer than every source file. */
export function ensureBinary(rebuild = false): void {
  if (existsSync(BINARY) && !rebuild) return;
  process.stderr.write('building dist/threadstore...\n');
  const build = Bun.spawnSync([BUN, 'run', 'build'], {
    cwd: ROOT,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (build.exitCode !== 0) throw new Error('npm run build failed');
}

/** Where the local embeddings API listens and the key it expects. */
export interface Embeddings {
  url: string;
  apiKey: string | null;
}

/** A throwaway PostgreSQL and a local embeddings API (its own process), stopped by cleanup(). */
export async function startInfrastructure(): Promise<{
  pg: PostgresCluster;
  embeddings: Embeddings;
}> {
  const pg = await startPostgres();
  cleanups.push(() => pg.stop());
  const proc = Bun.spawn([BUN, join(import.meta.dir, 'embedding-server.ts')], {
    env: { ...process.env, DIMENSIONS: String(EMBEDDING_DIMENSIONS) },
    stdout: 'pipe',
    stderr: 'inherit',
  });
  cleanups.push(async () => {
    proc.kill('SIGTERM');
    await proc.exited;
  });
  const reader = proc.stdout.getReader();
  let text = '';
  while (!text.includes('\n')) {
    const { value, done } = await reader.read();
    if (done) throw new Error('the embedding server exited before it started');
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return { pg, embeddings: JSON.parse(text) as Embeddings };
}

/** A port the system has just handed out as free (a random pick once collided). */
export function freePort(): number {
  const probe = Bun.listen({ hostname: '127.0.0.1', port: 0, socket: { data() {} } });
  const { port } = probe;
  probe.stop(true);
  return port;
}

/** A server process under test: where it listens, its memory, and how to stop it. */
export interface ServerProcess {
  name: string;
  base: string;
  pid: number;
  /** Resident set size now, MiB (0 once the process has gone). */
  rssMiB(): number;
  stop(): Promise<number>;
}

function rssOf(pid: number): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
    return kb / 1024;
  } catch {
    return 0;
  }
}

/** Starts a server process and waits until `readyPath` answers 200. */
export async function startServer(
  name: string,
  cmd: string[],
  env: Record<string, string>,
  port: number,
  readyPath = '/readyz',
): Promise<ServerProcess> {
  const proc = Bun.spawn(cmd, {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    stdout: 'ignore',
    stderr: 'inherit',
  });
  const base = `http://127.0.0.1:${port}`;
  const server: ServerProcess = {
    name,
    base,
    pid: proc.pid,
    rssMiB: () => rssOf(proc.pid),
    async stop() {
      proc.kill('SIGTERM');
      return proc.exited;
    },
  };
  cleanups.push(async () => {
    if (proc.exitCode === null) await server.stop();
  });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${name} exited with ${proc.exitCode}`);
    if ((await fetch(`${base}${readyPath}`).catch(() => null))?.ok) return server;
    await Bun.sleep(50);
  }
  throw new Error(`${name} not ready within ${READY_TIMEOUT_MS} ms`);
}

/**
 * The compiled binary (or `command`, e.g. the sources under a profiler) with limits raised for
 * the load through configuration, not code.
 */
export function startThreadstore(
  databaseUrl: string,
  embeddings: Embeddings | null,
  overrides: Record<string, string> = {},
  name = 'threadstore',
  command = [BINARY, 'serve'],
): Promise<ServerProcess> {
  const port = freePort();
  const env: Record<string, string> = {
    DATABASE_URL: databaseUrl,
    PORT: String(port),
    HOST: '127.0.0.1',
    ADMIN_API_KEY: ADMIN_KEY,
    NODE_ENV: 'production',
    DB_POOL_MAX: '20',
    RATE_LIMIT_WRITE_PER_MINUTE: '100000000',
    RATE_LIMIT_READ_PER_MINUTE: '100000000',
    RATE_LIMIT_ADMIN_PER_MINUTE: '100000000',
    RETENTION_INTERVAL_MS: '0',
    ...(embeddings
      ? {
          EMBEDDING_URL: embeddings.url,
          ...(embeddings.apiKey ? { EMBEDDING_API_KEY: embeddings.apiKey } : {}),
          EMBEDDING_DIMENSIONS: String(EMBEDDING_DIMENSIONS),
          EMBEDDING_MODEL: 'bench-model',
        }
      : {}),
    ...overrides,
  };
  return startServer(name, command, env, port);
}

/**
 * The framework-free ceiling (bench/baseline/server.ts) with the given bearer keys.
 * `embeddings` says whether threadstore runs with them, so both answer a create alike.
 */
export function startBaseline(
  databaseUrl: string,
  keys: Record<string, string>,
  embeddings: boolean,
  command = [BUN, join(import.meta.dir, 'baseline', 'server.ts')],
): Promise<ServerProcess> {
  const port = freePort();
  return startServer(
    'baseline',
    command,
    {
      DATABASE_URL: databaseUrl,
      PORT: String(port),
      DB_POOL_MAX: '20',
      EMBEDDING_STATUS: embeddings ? 'pending' : 'disabled',
      BASELINE_KEYS: Object.entries(keys)
        .map(([key, tenant]) => `${key}:${tenant}`)
        .join(','),
    },
    port,
    '/livez',
  );
}

/**
 * threadstore configuration given on a bench script's command line: the `NAME=value` arguments
 * that start with `prefix` (e.g. `B.` in bench/ab.ts), without it.
 */
export function settingsFrom(args: string[], prefix = ''): Record<string, string> {
  return Object.fromEntries(
    args
      .filter((a) => a.startsWith(prefix) && /^[A-Z_]+=/.test(a.slice(prefix.length)))
      .map((a) => [a.slice(prefix.length, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]),
  );
}

/** Request headers of a JSON request with a bearer key, for autocannon. */
export function jsonAuth(key: string): Record<string, string> {
  return { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
}

/** JSON over fetch with a bearer key; throws on a status other than `expect`. */
export async function api<T>(
  base: string,
  method: string,
  path: string,
  key: string,
  body?: unknown,
  expect = 200,
): Promise<T> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status !== expect) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return (text ? JSON.parse(text) : undefined) as T;
}

export interface Tenant {
  id: string;
  api_key: string;
}

export function createTenant(base: string, name: string): Promise<Tenant> {
  return api<Tenant>(base, 'POST', '/v1/admin/tenants', ADMIN_KEY, { name }, 201);
}

/** 1,000 messages in one conversation of `tenant` ('list'), for the list scenarios. */
export async function seedListConversation(base: string, tenant: Tenant): Promise<void> {
  for (let i = 0; i < 10; i++) {
    await api(
      base,
      'POST',
      '/v1/messages/batch',
      tenant.api_key,
      {
        messages: Array.from({ length: 100 }, (_, j) => ({
          conversation_id: 'list',
          role: 'user',
          content: `message ${i * 100 + j} `.repeat(8),
          metadata: { n: i * 100 + j },
        })),
      },
      201,
    );
  }
}

export const TICK_MS = 1000 / 100; // USER_HZ on Linux

/** utime + stime of a process, in ms (0 once it is gone). */
export function cpuOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * TICK_MS;
  } catch {
    return 0;
  }
}

/** One autocannon run against `server`, with a progress line and the server's peak RSS. */
export async function load(
  server: ServerProcess,
  label: { target?: string; scenario: string },
  opts: autocannon.Options,
): Promise<Run & { raw: autocannon.Result }> {
  let peak = server.rssMiB();
  const sampler = setInterval(() => {
    peak = Math.max(peak, server.rssMiB());
  }, RSS_SAMPLE_MS);
  const target = label.target ?? server.name;
  const what = `${target} · ${label.scenario} · ${opts.connections} conn`;
  let seconds = 0;
  let done = 0;
  const raw = await new Promise<autocannon.Result>((resolve, reject) => {
    // autocannon ends a run at its next sample (every second by default), so a run bounded by
    // `amount` counted up to a second of idle time: 1,000 batches done in 2.2 s were reported
    // as 330 req/s. Samples every 50 ms bound that to 50 ms.
    const sampled = opts.amount && opts.sampleInt === undefined ? { sampleInt: 50 } : {};
    const instance = autocannon({ ...opts, ...sampled }, (err, result) =>
      err ? reject(err) : resolve(result),
    );
    // The typings leave out the tick's argument: { counter, bytes } of the last second.
    const onTick = instance.on.bind(instance) as unknown as (
      event: 'tick',
      listener: (tick: { counter: number }) => void,
    ) => unknown;
    onTick('tick', ({ counter }) => {
      seconds++;
      done += counter;
      const bound = opts.amount ? `${done}/${opts.amount} req` : `${seconds}/${opts.duration}s`;
      process.stderr.write(
        `\r  ${what}: ${bound}, ${counter} req/s, rss ${Math.round(peak)} MiB   `,
      );
    });
  });
  clearInterval(sampler);
  peak = Math.max(peak, server.rssMiB());
  // Total over elapsed time: the average of per-sample counts undercounts a run bounded by
  // `amount`, and is per sample rather than per second when samples are not a second apart.
  const rps = Math.round(raw.requests.total / raw.duration);
  process.stderr.write(`\r  ${what}: ${rps} req/s, p99 ${raw.latency.p99} ms${' '.repeat(20)}\n`);
  return {
    target,
    scenario: label.scenario,
    connections: opts.connections ?? 10,
    durationS: raw.duration,
    requests: raw.requests.total,
    rps,
    latency: {
      p50: raw.latency.p50,
      p90: raw.latency.p90,
      p99: raw.latency.p99,
      max: raw.latency.max,
    },
    non2xx: raw.non2xx,
    errors: raw.errors,
    timeouts: raw.timeouts,
    peakRssMiB: Math.round(peak * 10) / 10,
    raw,
  };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  if (sorted.length === 0) return Number.NaN;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
