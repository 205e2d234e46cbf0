import { expect } from 'bun:test';
import { Writable } from 'node:stream';
import { buildApplication, openMigrated } from '../../src/bootstrap';
import { loadConfig } from '../../src/config';
import { EmbeddingWorker } from '../../src/embeddings/worker';
import { createLogger } from '../../src/logger';

export const ADMIN_KEY = 'test-admin-key-0123456789';
/** Longest wait at start-up for the LISTEN connection that brings key changes. */
const LISTEN_WAIT_MS = 5000;

/** Log lines the app wrote, parsed, so tests can assert what was (and was not) logged. */
export class LogCapture extends Writable {
  readonly lines: Record<string, unknown>[] = [];
  readonly raw: string[] = [];
  override _write(chunk: Buffer, _enc: string, done: () => void) {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      this.raw.push(line);
      this.lines.push(JSON.parse(line));
    }
    done();
  }
}

export type TestApp = Awaited<ReturnType<typeof buildTestApp>>;

/** The app in process against the test PostgreSQL, with its logs captured. */
export async function buildTestApp(
  env: Record<string, string> = {},
  /** worker: false to drive the embedding worker by hand; setup: false for a database that is down. */
  options: { worker?: boolean; setup?: boolean } = {},
) {
  const config = loadConfig({
    DATABASE_URL: process.env.TEST_DATABASE_URL,
    ADMIN_API_KEY: ADMIN_KEY,
    LOG_LEVEL: 'info',
    // Budgets far above what any test sends; rate-limit tests set their own.
    RATE_LIMIT_WRITE_PER_MINUTE: '1000000',
    RATE_LIMIT_READ_PER_MINUTE: '1000000',
    RATE_LIMIT_ADMIN_PER_MINUTE: '1000000',
    ...env,
  });
  const logs = new LogCapture();
  const logger = createLogger(config.LOG_LEVEL, logs);
  // As `serve` starts: migrate (a no-op when up to date), then set search up.
  const setup = options.setup !== false;
  const database = await openMigrated(config, logger, setup);
  const { deps, app, handler } = await buildApplication(config, logger, database, setup);
  const { embedder } = deps;
  // Tests start once key changes of other instances are heard (health reports it, too).
  for (let waited = 0; setup && waited < LISTEN_WAIT_MS; waited += 10) {
    if (deps.keys.listenerState().listening) break;
    await Bun.sleep(10);
  }
  // The background worker as the server runs it; tests that drive it by hand pass worker: false.
  const worker = embedder ? new EmbeddingWorker(database.db, embedder, config, logger) : null;
  if (worker && options.worker !== false) worker.start();

  async function call(
    method: string,
    path: string,
    opts: {
      body?: unknown;
      raw?: string | Uint8Array | ReadableStream;
      /** Socket address the request comes from. */
      ip?: string;
      key?: string | null;
      headers?: Record<string, string>;
    } = {},
  ) {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.key) headers.authorization = `Bearer ${opts.key}`;
    let body: string | Uint8Array | ReadableStream | undefined = opts.raw;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] ??= 'application/json';
    }
    const request = new Request(`http://localhost${path}`, { method, headers, body });
    // Through the same entry point as the server, with the socket address the test chose.
    const res = await handler(request, {
      requestIP: () => ({ address: opts.ip ?? '127.0.0.1', family: 'IPv4', port: 40000 }),
    });
    const text = await res.text();
    let json: any = undefined;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, json, text };
  }

  /** A fresh tenant (each test gets its own, which is what isolates tests from each other). */
  async function tenant(name = 'test tenant') {
    const res = await call('POST', '/v1/admin/tenants', { key: ADMIN_KEY, body: { name } });
    if (res.status !== 201) throw new Error(`tenant creation failed: ${res.status} ${res.text}`);
    return res.json as { id: string; name: string; api_key: string };
  }

  return {
    app,
    deps,
    handler,
    config,
    logs,
    database,
    db: database.db,
    call,
    tenant,
    worker,
    close: async () => {
      await worker?.stop();
      await deps.rateLimitStore?.kill();
      await database.close();
    },
  };
}

let shared: Promise<TestApp> | undefined;

/** One app for the files that do not need special configuration. */
export function sharedApp(): Promise<TestApp> {
  shared ??= buildTestApp();
  return shared;
}

/** Asserts a 401 in the one error shape, with the Bearer challenge. */
export function expectUnauthorized(res: { status: number; headers: Headers; json: unknown }) {
  expect(res.status).toBe(401);
  expect(res.headers.get('www-authenticate')).toBe('Bearer');
  expect(res.json).toEqual({
    error: { code: 'unauthorized', message: expect.any(String), request_id: expect.any(String) },
  });
}
