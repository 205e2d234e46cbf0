// The compiled binary for end-to-end and fault tests: built fresh, copied alone into a directory
// of its own, and run as `threadstore serve` with only the environment a test passes.
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ROOT = join(import.meta.dir, '..');
/** Generous: the build takes 1 to 2 s on a small machine, far longer when others compete for it. */
export const BUILD_TIMEOUT_MS = 120_000;
/** How long a server gets to log its port and answer /readyz 200. */
export const READY_TIMEOUT_MS = 30_000;

/** The temporary directories of one test file: `make` creates one, `removeAll` deletes them. */
export class TempDirs {
  private readonly dirs: string[] = [];

  make(label: string): string {
    const dir = mkdtempSync(join(tmpdir(), `threadstore-e2e-${label}-`));
    this.dirs.push(dir);
    return dir;
  }

  removeAll(): void {
    for (const dir of this.dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs `npm run build` and copies the binary to `dir`, alone; returns its path there. */
export async function buildBinary(dir: string): Promise<string> {
  const build = Bun.spawn([join(ROOT, 'node_modules', '.bin', 'bun'), 'run', 'build'], {
    cwd: ROOT,
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const [code, out, err] = await Promise.all([
    build.exited,
    new Response(build.stdout).text(),
    new Response(build.stderr).text(),
  ]);
  if (code !== 0) throw new Error(`npm run build failed (exit ${code}):\n${out}\n${err}`);
  const binary = join(dir, 'threadstore');
  copyFileSync(join(ROOT, 'dist', 'threadstore'), binary);
  return binary;
}

/** Only what is passed: the test runner's own DATABASE_URL or NODE_ENV must not leak in. */
export function binaryEnv(vars: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '/usr/bin:/bin', HOST: '127.0.0.1', ...vars };
}

/** Servers not yet exited, so a test file can kill what a failed test left behind. */
const running = new Set<ServerProcess>();

/** SIGKILLs every server still running and waits for them to exit. */
export async function killAllServers(): Promise<void> {
  const left = [...running];
  for (const server of left) server.proc.kill('SIGKILL');
  await Promise.all(left.map((s) => s.proc.exited));
}

/** A running `threadstore serve`, its output collected as it arrives. */
export class ServerProcess {
  readonly proc: Bun.Subprocess<'ignore', 'pipe', 'pipe'>;
  stdout = '';
  stderr = '';
  port = 0;
  /** Settles once both output streams have been read to their end. */
  private readonly drained: Promise<unknown>;

  /**
   * Starts `binary serve` in `cwd`. PORT defaults to 0 (the kernel picks a free port, which
   * ready() reads from the info-level "listening" log line); with a fixed PORT, the server may
   * log at any level.
   */
  constructor(binary: string, vars: Record<string, string>, cwd: string) {
    this.port = Number(vars.PORT ?? 0);
    this.proc = Bun.spawn([binary, 'serve'], {
      cwd,
      env: binaryEnv({ PORT: '0', ...vars }),
      stdin: 'ignore',
      stdout: 'pipe',
      stderr: 'pipe',
    });
    running.add(this);
    this.drained = Promise.all([
      this.collect(this.proc.stdout, (s) => (this.stdout += s)),
      this.collect(this.proc.stderr, (s) => (this.stderr += s)),
    ]);
    void this.proc.exited.then(() => running.delete(this));
  }

  private async collect(stream: ReadableStream<Uint8Array>, append: (s: string) => void) {
    const decoder = new TextDecoder();
    for await (const chunk of stream) append(decoder.decode(chunk, { stream: true }));
  }

  /** JSON log lines so far; throws on a line that is not JSON. */
  logs(): Record<string, unknown>[] {
    return this.stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line));
  }

  /** Waits for the "listening" log line, then for /readyz to answer 200. */
  async ready(timeoutMs = READY_TIMEOUT_MS): Promise<this> {
    const deadline = Date.now() + timeoutMs;
    while (!this.port) {
      const listening = this.stdout
        .split('\n')
        .filter((line) => line.includes('threadstore listening'))
        .map((line) => JSON.parse(line) as { port: number })[0];
      if (listening) this.port = listening.port;
      else await this.tick(deadline);
    }
    while ((await fetch(this.url('/readyz')).catch(() => null))?.status !== 200) {
      await this.tick(deadline);
    }
    return this;
  }

  private async tick(deadline: number): Promise<void> {
    if (this.proc.exitCode !== null || Date.now() > deadline) {
      throw new Error(
        `server not ready (exit ${this.proc.exitCode}):\n${this.stdout}\n${this.stderr}`,
      );
    }
    await Bun.sleep(25);
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /** One JSON request with a bearer key; the body is parsed as JSON. */
  async call(method: string, path: string, key: string, body?: unknown) {
    const res = await fetch(this.url(path), {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, headers: res.headers, json: (await res.json()) as any };
  }

  /** Waits (briefly) until stderr matches `pattern`: the two streams arrive independently. */
  async stderrMatch(pattern: RegExp): Promise<RegExpMatchArray> {
    const deadline = Date.now() + 2000;
    for (;;) {
      const m = pattern.exec(this.stderr);
      if (m) return m;
      if (Date.now() > deadline)
        throw new Error(`stderr never matched ${pattern}:\n${this.stderr}`);
      await Bun.sleep(10);
    }
  }

  /** SIGTERM, then the exit code once all output is in. */
  async stop(): Promise<number> {
    this.proc.kill('SIGTERM');
    return this.exited();
  }

  /** The exit code once the process has ended and all its output is in. */
  async exited(): Promise<number> {
    const code = await this.proc.exited;
    await this.drained;
    return code;
  }
}
