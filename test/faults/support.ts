// Shared pieces of the fault-injection tests (run by `npm run test:faults`, not by `npm test`):
// the compiled binary, its environment, and a closed-loop write load that records the outcome of
// every request, so a test can check afterwards what the service promised against what it stored.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { buildBinary, ServerProcess } from '../../harness/binary';
import { freePort } from '../../harness/net';

export const ADMIN_KEY = 'fault-admin-key-0123456789';
/** A client gives up on a request after this long and records it as hung. */
export const HANG_MS = 20_000;
/** Pause of a load client after a failed request, as a well-behaved client would back off. */
const BACKOFF_MS = 50;

let built: Promise<string> | null = null;

/** The binary, built once per test process into a directory of its own. */
export function faultBinary(): Promise<string> {
  if (!built) {
    const dir = mkdtempSync(join(tmpdir(), 'threadstore-faults-bin-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    built = buildBinary(dir);
  }
  return built;
}

/** Temp directories of this process, removed on exit. */
export function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `threadstore-faults-${label}-`));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Starts the binary against `databaseUrl` with budgets no load here reaches; `vars` win. It
 * logs warnings and errors only (a line per request would cost the load CPU), so the port is
 * chosen here rather than read from the info-level "listening" line.
 */
export async function startServer(
  databaseUrl: string,
  vars: Record<string, string> = {},
): Promise<ServerProcess> {
  const server = new ServerProcess(
    await faultBinary(),
    {
      DATABASE_URL: databaseUrl,
      ADMIN_API_KEY: ADMIN_KEY,
      PORT: String(await freePort()),
      LOG_LEVEL: 'warn',
      RATE_LIMIT_WRITE_PER_MINUTE: '10000000',
      RATE_LIMIT_READ_PER_MINUTE: '10000000',
      RATE_LIMIT_ADMIN_PER_MINUTE: '10000000',
      // No scheduled retention run competing with the load.
      RETENTION_INTERVAL_MS: '0',
      ...vars,
    },
    tempDir('cwd'),
  );
  return server.ready();
}

/** A new tenant through the admin API. */
export async function createTenant(server: ServerProcess): Promise<{ id: string; key: string }> {
  const res = await server.call('POST', '/v1/admin/tenants', ADMIN_KEY, { name: 'faults' });
  if (res.status !== 201) throw new Error(`tenant not created: ${res.status}`);
  return { id: res.json.id, key: res.json.api_key };
}

/** What one request came back with; status 0 is a network error or a hang (see `error`). */
export interface Outcome {
  status: number;
  /** `error.code` of an error body. */
  code?: string;
  retryAfter: string | null;
  body?: any;
  error?: string;
  /** performance.now() when the request was sent and how long it took. */
  startedAt: number;
  ms: number;
}

/** Sends one request and never throws: failures are part of the outcome. */
export async function send(
  server: ServerProcess,
  method: string,
  path: string,
  key: string,
  body?: unknown,
): Promise<Outcome> {
  const startedAt = performance.now();
  try {
    const res = await fetch(server.url(path), {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(HANG_MS),
    });
    const text = await res.text();
    let json: any;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    return {
      status: res.status,
      code: json?.error?.code,
      retryAfter: res.headers.get('retry-after'),
      body: json,
      startedAt,
      ms: performance.now() - startedAt,
    };
  } catch (err) {
    return {
      status: 0,
      retryAfter: null,
      error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
      startedAt,
      ms: performance.now() - startedAt,
    };
  }
}

/** One request of a load: where it goes and what the test needs to know about it later. */
export interface LoadRequest<T> {
  path: string;
  body: unknown;
  meta: T;
}

export interface Attempt<T> extends Outcome {
  meta: T;
}

/** A closed-loop load: each client sends its next request when the previous one is answered. */
export class WriteLoad<T> {
  readonly attempts: Attempt<T>[] = [];
  /** Requests sent and not answered yet. */
  readonly inFlight = new Set<{ meta: T; startedAt: number }>();
  private stopped = false;
  private readonly clients: Promise<void>[];

  constructor(
    private server: ServerProcess,
    private readonly key: string,
    clients: number,
    private readonly next: (client: number, seq: number) => LoadRequest<T>,
    /** Pause of each client between two requests; 0 sends the next one at once. */
    private readonly pauseMs = 0,
  ) {
    this.clients = Array.from({ length: clients }, (_, c) => this.client(c));
  }

  /** Sends the next requests to another server (after a restart). */
  retarget(server: ServerProcess): void {
    this.server = server;
  }

  private async client(c: number): Promise<void> {
    for (let seq = 0; !this.stopped; seq++) {
      const { path, body, meta } = this.next(c, seq);
      const entry = { meta, startedAt: performance.now() };
      this.inFlight.add(entry);
      const outcome = await send(this.server, 'POST', path, this.key, body);
      this.inFlight.delete(entry);
      this.attempts.push({ ...outcome, meta });
      if (outcome.status < 200 || outcome.status >= 300) await Bun.sleep(BACKOFF_MS);
      else if (this.pauseMs > 0) await Bun.sleep(this.pauseMs);
    }
  }

  /** Answers with a 2xx status so far. */
  succeeded(): Attempt<T>[] {
    return this.attempts.filter((a) => a.status >= 200 && a.status < 300);
  }

  /** Waits until `count` more requests have been answered 2xx, or throws after `timeoutMs`. */
  async waitForSuccesses(count: number, timeoutMs: number): Promise<void> {
    const target = this.succeeded().length + count;
    const deadline = performance.now() + timeoutMs;
    while (this.succeeded().length < target) {
      if (performance.now() > deadline) {
        const recent = this.attempts.slice(-5).map((a) => `${a.status} ${a.code ?? a.error}`);
        throw new Error(`no ${count} successes within ${timeoutMs} ms; last: ${recent}`);
      }
      await Bun.sleep(20);
    }
  }

  /** Stops sending and waits for the requests in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.clients);
  }
}

/** A postgres.js client for checking what the database holds. */
export function inspector(url: string) {
  return postgres(url, { max: 2, onnotice: () => {} });
}

/** Status counts of attempts, e.g. {"201": 120, "503 database_unavailable": 14}, for messages. */
export function tally(outcomes: Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of outcomes) {
    const key = o.status === 0 ? `error ${o.error}` : `${o.status}${o.code ? ` ${o.code}` : ''}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}
