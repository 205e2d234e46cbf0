// Throwaway Redis servers for tests: each startRedis() runs its own redis-server in the
// foreground on a free port, in a temp directory of its own and with persistence off, so test
// files run in parallel and an outage test can stop and restart its server without disturbing
// anyone else. No system Redis service is used.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Subprocess } from 'bun';
import { freePort } from './net';

/** How to get redis-server onto this machine (what .ci/run does). */
export const REDIS_INSTALL = 'sudo apt-get install -y redis-server';

/** How long a start waits for the server to answer PING. */
const START_TIMEOUT_MS = 10_000;

export interface RedisServer {
  url: string;
  port: number;
  /** Stops the server (SIGTERM, then SIGKILL) and waits until it is gone; start() revives it. */
  stop(): Promise<void>;
  /** Starts the server again on the same port (empty: nothing is persisted). */
  start(): Promise<void>;
  /** Sends a signal, e.g. SIGSTOP to make Redis hang without closing connections, SIGCONT. */
  kill(signal: NodeJS.Signals): void;
  /** Stops the server for good and removes its directory. */
  close(): Promise<void>;
}

/** The redis-server binary on PATH, or null. */
export function findRedisServer(): string | null {
  return Bun.which('redis-server');
}

const live = new Set<Subprocess>();
let exitHandlerInstalled = false;

// A test runner that crashes must not leave servers behind.
function installExitHandler(): void {
  if (exitHandlerInstalled) return;
  exitHandlerInstalled = true;
  process.on('exit', () => {
    for (const proc of live) proc.kill('SIGKILL');
  });
}

/** True once the server at `port` answers PING with PONG. */
function pong(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => done(data.toString().startsWith('+PONG')));
  });
}

/** Starts a fresh redis-server; throws when the binary is missing or it does not come up. */
export async function startRedis(): Promise<RedisServer> {
  const binary = findRedisServer();
  if (!binary) throw new Error(`redis-server not found: ${REDIS_INSTALL}`);
  installExitHandler();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'threadstore-redis-'));
  const port = await freePort();
  let proc: Subprocess | null = null;
  let output = '';

  const spawn = async () => {
    const child = Bun.spawn(
      [
        binary,
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
        '--dir',
        dir,
      ],
      { cwd: dir, stdout: 'pipe', stderr: 'pipe' },
    );
    proc = child;
    live.add(child);
    void new Response(child.stdout).text().then((text) => (output += text));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) break;
      if (await pong(port)) return;
      await Bun.sleep(20);
    }
    child.kill('SIGKILL');
    live.delete(child);
    await child.exited;
    throw new Error(`redis-server on port ${port} did not start:\n${output.slice(-2000)}`);
  };

  const stop = async () => {
    const child = proc;
    if (!child) return;
    proc = null;
    // A stopped (SIGSTOP) server cannot act on SIGTERM.
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    const exited = await Promise.race([child.exited.then(() => true), Bun.sleep(5000)]);
    if (exited !== true) {
      child.kill('SIGKILL');
      await child.exited;
    }
    live.delete(child);
  };

  await spawn();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    stop,
    async start() {
      if (proc) return;
      await spawn();
    },
    kill(signal) {
      if (!proc) throw new Error('redis-server is not running');
      proc.kill(signal);
    },
    async close() {
      await stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
