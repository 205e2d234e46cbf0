// Shared pieces of the multi-instance tests (run by `npm run test:fleet`, not by `npm test`):
// three copies of the compiled binary on loopback, one PostgreSQL database (a fresh one per
// file, in the cluster test/setup.ts started, so the instances migrate it together at start-up)
// and a client that spreads requests over the instances round-robin, as a load balancer would.
import type { ServerProcess } from '../../harness/binary';
import { createDatabase } from '../../harness/postgres';
import { ADMIN_KEY, inspector, type Outcome, send, startServer } from '../faults/support';

export { ADMIN_KEY } from '../faults/support';

/** Instances in a fleet. */
export const FLEET_SIZE = 3;
/** Shared by every instance: a cursor signed by one must be accepted by the others. */
const CURSOR_SECRET = 'fleet-cursor-secret-0123456789';

export interface Fleet {
  instances: ServerProcess[];
  /** The fleet's database. */
  url: string;
  /** A client for checking what the database holds. */
  sql: ReturnType<typeof inspector>;
  /** The next instance in round-robin order. */
  next(): ServerProcess;
  /** One request to the next instance; never throws (see `send`). */
  send(method: string, path: string, key: string, body?: unknown): Promise<Outcome>;
  /** A new tenant through the admin API of the next instance. */
  createTenant(body?: Record<string, unknown>): Promise<{ id: string; key: string }>;
  close(): Promise<void>;
}

/**
 * Starts FLEET_SIZE instances at once on a new database named `name`, each with the same admin
 * key and cursor secret plus `vars`. The process exit handlers of the helpers remove what a
 * failed run leaves behind; `close` ends it in order.
 */
export async function startFleet(name: string, vars: Record<string, string> = {}): Promise<Fleet> {
  const adminUrl = process.env.TEST_DATABASE_URL;
  if (!adminUrl) throw new Error('TEST_DATABASE_URL is not set: is test/setup.ts preloaded?');
  const url = await createDatabase(adminUrl, `fleet_${name}_${crypto.randomUUID().slice(0, 8)}`);
  const instances = await Promise.all(
    Array.from({ length: FLEET_SIZE }, () => startServer(url, { CURSOR_SECRET, ...vars })),
  );
  const sql = inspector(url);
  let turn = 0;
  const next = () => instances[turn++ % instances.length]!;
  return {
    instances,
    url,
    sql,
    next,
    send: (method, path, key, body) => send(next(), method, path, key, body),
    async createTenant(body = {}) {
      const res = await send(next(), 'POST', '/v1/admin/tenants', ADMIN_KEY, {
        name: 'fleet',
        ...body,
      });
      if (res.status !== 201) throw new Error(`tenant not created: ${res.status} ${res.code}`);
      return { id: res.body.id, key: res.body.api_key };
    },
    async close() {
      await Promise.all(instances.map((i) => i.stop()));
      await sql.end({ timeout: 5 });
    },
  };
}

/** A message body; `content` tells messages apart in the database and the embedding server. */
export function message(content: string, conversation = 'fleet') {
  return { conversation_id: conversation, role: 'user', content };
}

/** The value of an unlabelled (or exactly labelled) series on an instance's /metrics, or 0. */
export async function metric(server: ServerProcess, series: string): Promise<number> {
  const text = await (await fetch(server.url('/metrics'))).text();
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return 0;
}

/** `count` calls of `fn` started together; resolves with their results in order. */
export function concurrently<T>(count: number, fn: (i: number) => Promise<T>): Promise<T[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => fn(i)));
}
