// Throwaway PostgreSQL clusters for the tests and the bench: each call to startPostgres() gets
// its own data directory, port and unix-socket directory, so test files can run in parallel and
// fault tests can kill a server without disturbing anyone else.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import postgres from 'postgres';
import { freePort } from './net';

export interface PostgresCluster {
  url: string;
  port: number;
  dataDir: string;
  pgBin: string;
  stop(): Promise<void>;
  kill(signal?: NodeJS.Signals): void;
  start(): Promise<void>;
}

export interface StartPostgresOptions {
  port?: number;
  /**
   * Server settings (`-c name=value`) applied after the defaults, which favour speed over
   * durability. Fault tests that kill the server set `synchronous_commit: 'on'`: with it off, a
   * commit already acknowledged can still be lost when the server dies.
   */
  settings?: Record<string, string>;
}

const MISSING_BINARIES =
  'PostgreSQL server binaries not found (initdb/pg_ctl): install them with ' +
  '"sudo apt-get install -y postgresql" or set DATABASE_URL';

// initdb and postgres refuse to run as root, so under root every command goes through runuser.
const RUN_AS_USER = 'postgres';
const isRoot = process.getuid?.() === 0;

function hasServerBinaries(dir: string): boolean {
  return ['initdb', 'pg_ctl'].every((name) => {
    try {
      fs.accessSync(path.join(dir, name), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

export function findPgBin(): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, 'initdb');
    if (!fs.existsSync(candidate)) continue;
    // Debian puts symlinks in /usr/local/bin or /usr/bin (or the pg_wrapper script); the real
    // directory is the one that also holds pg_ctl and postgres of the same version.
    let realDir: string;
    try {
      realDir = path.dirname(fs.realpathSync(candidate));
    } catch {
      continue;
    }
    if (hasServerBinaries(realDir)) return realDir;
  }

  const root = '/usr/lib/postgresql';
  let versions: string[];
  try {
    versions = fs.readdirSync(root);
  } catch {
    return null;
  }
  // Numeric sort: '9.6' < '10' < '15', which a string sort gets wrong.
  versions.sort((a, b) => b.localeCompare(a, undefined, { numeric: true }));
  for (const version of versions) {
    const dir = path.join(root, version, 'bin');
    if (hasServerBinaries(dir)) return dir;
  }
  return null;
}

interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

// PG* variables from the developer's shell (PGDATA, PGPORT, PGHOST, ...) would silently redirect
// pg_ctl or the driver to another server.
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('PG')) env[key] = value;
  }
  return { ...env, LC_ALL: 'C' };
}

// Synchronous on purpose: the same function has to work inside the process 'exit' handler.
function run(cmd: string, args: string[], cwd: string): RunResult {
  const [file, argv] = isRoot ? ['runuser', ['-u', RUN_AS_USER, '--', cmd, ...args]] : [cmd, args];
  const result = spawnSync(file, argv, {
    cwd,
    env: cleanEnv(),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 120_000,
  });
  return {
    status: result.status,
    stdout: result.stdout ?? '',
    stderr: (result.stderr ?? '') + (result.error ? `\n${result.error.message}` : ''),
  };
}

function runOrThrow(cmd: string, args: string[], cwd: string, extra = ''): RunResult {
  const result = run(cmd, args, cwd);
  if (result.status !== 0) {
    const output = [result.stderr.trim(), result.stdout.trim(), extra.trim()]
      .filter(Boolean)
      .join('\n');
    throw new Error(
      `${path.basename(cmd)} ${args.join(' ')} failed (exit ${result.status}):\n${output}`,
    );
  }
  return result;
}

function canAccessAsPostgres(dir: string): boolean {
  const result = spawnSync('runuser', [
    '-u',
    RUN_AS_USER,
    '--',
    'test',
    '-x',
    dir,
    '-a',
    '-w',
    dir,
  ]);
  return result.status === 0;
}

function makeTempDir(): string {
  // Under root, os.tmpdir() may be somewhere like /root/tmp that the postgres user cannot
  // reach; /tmp (mode 1777) always works.
  const bases = [os.tmpdir(), '/tmp'];
  for (const base of bases) {
    if (isRoot && !canAccessAsPostgres(base)) continue;
    const dir = fs.mkdtempSync(path.join(base, 'threadstore-pg-'));
    // mkdtemp creates 0700; the postgres user (after chown) and root both need to get in.
    fs.chmodSync(dir, 0o755);
    if (isRoot) {
      const chown = spawnSync('chown', ['-R', `${RUN_AS_USER}:`, dir], { encoding: 'utf8' });
      if (chown.status !== 0) {
        fs.rmSync(dir, { recursive: true, force: true });
        throw new Error(`chown ${RUN_AS_USER} ${dir} failed: ${chown.stderr}`);
      }
    }
    return dir;
  }
  throw new Error(
    `no temp directory writable by the ${RUN_AS_USER} user (tried ${bases.join(', ')})`,
  );
}

function readPostmasterPid(dataDir: string): number | null {
  try {
    const pid = Number.parseInt(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8'), 10);
    return Number.isFinite(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

// A SIGKILLed postmaster is reparented to PID 1, which in containers often never reaps it; the
// zombie still answers kill(pid, 0), so postgres would take it for a live server.
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return true;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function logTail(logFile: string, lines = 20): string {
  try {
    const text = fs.readFileSync(logFile, 'utf8').trimEnd().split('\n');
    return `--- ${logFile} (last ${lines} lines) ---\n${text.slice(-lines).join('\n')}`;
  } catch {
    return '';
  }
}

interface LiveCluster {
  pgBin: string;
  dataDir: string;
  tmpDir: string;
}

const liveClusters = new Set<LiveCluster>();
let exitHandlersInstalled = false;

function emergencyStop(cluster: LiveCluster): void {
  run(path.join(cluster.pgBin, 'pg_ctl'), ['-D', cluster.dataDir, '-m', 'immediate', 'stop'], '/');
  const pid = readPostmasterPid(cluster.dataDir);
  if (pid && isAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  fs.rmSync(cluster.tmpDir, { recursive: true, force: true });
  liveClusters.delete(cluster);
}

function stopAllSync(): void {
  for (const cluster of [...liveClusters]) emergencyStop(cluster);
}

// pg_ctl detaches the postmaster into its own session, so nothing kills it when the test runner
// dies; without these handlers every crashed or interrupted run would leak a cluster.
function installExitHandlers(): void {
  if (exitHandlersInstalled) return;
  exitHandlersInstalled = true;
  process.on('exit', stopAllSync);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = (): void => {
      stopAllSync();
      process.off(signal, handler);
      // Re-raise so the default action (or the runner's own handler) still ends the process.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, handler);
  }
}

export async function startPostgres(opts: StartPostgresOptions = {}): Promise<PostgresCluster> {
  const pgBin = findPgBin();
  if (!pgBin) throw new Error(MISSING_BINARIES);
  const pgCtl = path.join(pgBin, 'pg_ctl');

  const tmpDir = makeTempDir();
  const dataDir = path.join(tmpDir, 'data');
  const logFile = path.join(tmpDir, 'log');
  const live: LiveCluster = { pgBin, dataDir, tmpDir };
  installExitHandlers();
  liveClusters.add(live);

  let port = opts.port ?? 0;
  let lastSignal: NodeJS.Signals | null = null;

  const pgCtlStart = (): RunResult => {
    // pg_ctl hands -o to a shell, hence the quoting of the socket directory.
    const serverOptions = [
      `-p ${port}`,
      `-k '${tmpDir}'`,
      '-c listen_addresses=127.0.0.1',
      '-c fsync=off',
      '-c synchronous_commit=off',
      '-c full_page_writes=off',
      '-c max_connections=300',
      ...Object.entries(opts.settings ?? {}).map(([name, value]) => `-c ${name}=${value}`),
    ].join(' ');
    return run(
      pgCtl,
      ['-D', dataDir, '-l', logFile, '-o', serverOptions, '-t', '60', '-w', 'start'],
      tmpDir,
    );
  };

  const startError = (result: RunResult): Error =>
    new Error(
      `pg_ctl start failed (exit ${result.status}) on port ${port}:\n` +
        [result.stderr.trim(), result.stdout.trim(), logTail(logFile)].filter(Boolean).join('\n'),
    );

  try {
    runOrThrow(
      path.join(pgBin, 'initdb'),
      ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-locale', '--no-sync'],
      tmpDir,
    );

    // The free-port probe races with other processes; when we chose the port, retry with a
    // fresh one rather than fail the suite.
    for (let attempt = 1; ; attempt++) {
      if (!opts.port) port = await freePort();
      const result = pgCtlStart();
      if (result.status === 0) break;
      const portTaken = /could not bind|Address already in use/i.test(logTail(logFile, 50));
      if (opts.port || !portTaken || attempt >= 3) throw startError(result);
    }
  } catch (error) {
    emergencyStop(live);
    throw error;
  }

  const cluster: PostgresCluster = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dataDir,
    pgBin,

    async stop(): Promise<void> {
      if (!liveClusters.has(live)) return;
      const pid = readPostmasterPid(dataDir);
      // A stopped postmaster cannot act on the shutdown signal; pg_ctl would wait out its timeout.
      if (pid && (lastSignal === 'SIGSTOP' || lastSignal === 'SIGTSTP')) {
        try {
          process.kill(pid, 'SIGCONT');
        } catch {
          // Already gone.
        }
      }
      // Fails when the server is already down (e.g. after kill()); that is fine.
      run(pgCtl, ['-D', dataDir, '-m', 'fast', '-t', '20', '-w', 'stop'], tmpDir);
      emergencyStop(live);
    },

    kill(signal: NodeJS.Signals = 'SIGKILL'): void {
      const pid = readPostmasterPid(dataDir);
      if (!pid) throw new Error(`no postmaster.pid in ${dataDir}: server is not running`);
      process.kill(pid, signal);
      lastSignal = signal;
    },

    async start(): Promise<void> {
      if (!liveClusters.has(live))
        throw new Error('cluster was stopped; call startPostgres() again');
      const oldPid = readPostmasterPid(dataDir);
      if (oldPid && isAlive(oldPid)) {
        // A SIGTERM/SIGINT/SIGQUIT shutdown is asynchronous: give it time before deciding.
        for (let i = 0; i < 100 && isAlive(oldPid); i++) await sleep(50);
        if (isAlive(oldPid)) return;
      }
      if (oldPid) {
        // postgres checks the socket lock file the same way as postmaster.pid.
        const socket = path.join(tmpDir, `.s.PGSQL.${port}`);
        for (const stale of [path.join(dataDir, 'postmaster.pid'), `${socket}.lock`, socket]) {
          fs.rmSync(stale, { force: true });
        }
      }
      lastSignal = null;

      // After a SIGKILL the orphaned backends keep the shared memory segment attached until they
      // notice the postmaster is gone, and postgres refuses to start until then.
      for (let attempt = 1; ; attempt++) {
        const result = pgCtlStart();
        if (result.status === 0) return;
        const stillAttached = /shared memory block .* is still in use/i.test(logTail(logFile, 50));
        if (!stillAttached || attempt >= 50) throw startError(result);
        await sleep(100);
      }
    },
  };
  return cluster;
}

export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    // sql(name) quotes it as an identifier; CREATE DATABASE takes no bind parameters.
    await sql`CREATE DATABASE ${sql(name)}`;
  } finally {
    await sql.end({ timeout: 5 });
  }
  const url = new URL(adminUrl);
  url.pathname = `/${encodeURIComponent(name)}`;
  return url.toString();
}
