// SIGTERM to the compiled binary while its embedding call hangs: the process must exit within
// SHUTDOWN_TIMEOUT_MS (systemd and Compose would otherwise kill it) and give its claimed batch
// back, so that another instance embeds it at once instead of after the lease.
import { afterAll, beforeAll, expect, test } from 'bun:test';
import postgres from 'postgres';
import {
  BUILD_TIMEOUT_MS,
  buildBinary,
  killAllServers,
  ServerProcess,
  TempDirs,
} from '../../harness/binary';
import { startEmbeddingServer } from '../../harness/embedding-server';
import { createDatabase } from '../../harness/postgres';
import { requirePgvector } from '../support/requires';

const describeWithPgvector = await requirePgvector();

const ADMIN_KEY = 'e2e-admin-key-0123456789';
const DIMENSIONS = 16;
const SHUTDOWN_TIMEOUT_MS = 3000;
/** Generous: start-up of the process is not measured, only the time from SIGTERM to exit. */
const MARGIN_MS = 2000;
/** Far beyond the test: only the shutdown can end the stalled call. */
const LEASE_MS = 300_000;

const provider = startEmbeddingServer({ dimensions: DIMENSIONS });
let binary = '';

const temp = new TempDirs();
const tempDir = (label: string) => temp.make(label);

beforeAll(async () => {
  binary = await buildBinary(tempDir('bin'));
}, BUILD_TIMEOUT_MS);

afterAll(async () => {
  await killAllServers();
  await provider.stop();
  temp.removeAll();
});

function start(databaseUrl: string): Promise<ServerProcess> {
  return new ServerProcess(
    binary,
    {
      DATABASE_URL: databaseUrl,
      ADMIN_API_KEY: ADMIN_KEY,
      EMBEDDING_URL: provider.url,
      EMBEDDING_API_KEY: provider.apiKey!,
      EMBEDDING_DIMENSIONS: String(DIMENSIONS),
      // The stalled call would hang for a minute, and be retried, without the shutdown.
      EMBEDDING_TIMEOUT_MS: '60000',
      EMBEDDING_MAX_RETRIES: '3',
      EMBEDDING_LEASE_MS: String(LEASE_MS),
      EMBEDDING_POLL_INTERVAL_MS: '50',
      SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      RETENTION_INTERVAL_MS: '0',
    },
    tempDir('cwd'),
  ).ready();
}

describeWithPgvector('shutdown while the embedding service stalls', () => {
  test('SIGTERM exits 0 within SHUTDOWN_TIMEOUT_MS and gives the claimed messages back to the queue', async () => {
    const url = await createDatabase(
      process.env.TEST_DATABASE_URL!,
      `e2e_${crypto.randomUUID().slice(0, 8)}`,
    );
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      provider.reset();
      provider.mode = 'stall';
      const first = await start(url);
      const tenant = await first.call('POST', '/v1/admin/tenants', ADMIN_KEY, { name: 'stall' });
      const contents = ['claimed at shutdown 1', 'claimed at shutdown 2', 'claimed at shutdown 3'];
      const res = await first.call('POST', '/v1/messages/batch', tenant.json.api_key, {
        messages: contents.map((content) => ({ conversation_id: 'c', role: 'user', content })),
      });
      expect(res.status).toBe(201);
      for (let i = 0; provider.stalled === 0; i++) {
        if (i > 200) throw new Error('the worker never called the embedding service');
        await Bun.sleep(25);
      }
      const rows = () => sql<{ status: string; claimed: boolean; failures: number }[]>`
        select embedding_status as status, lease_until is not null as claimed, failures
        from message_search where tenant_id = ${tenant.json.id} order by message_id`;
      expect((await rows()).map((r) => r.claimed)).toEqual([true, true, true]);

      const started = performance.now();
      first.proc.kill('SIGTERM');
      const exit = await Promise.race([
        first.exited(),
        Bun.sleep(SHUTDOWN_TIMEOUT_MS + MARGIN_MS).then(() => 'still running' as const),
      ]);
      const elapsed = performance.now() - started;
      if (exit === 'still running') first.proc.kill('SIGKILL');
      console.info(`exit ${exit} ${Math.round(elapsed)} ms after SIGTERM`);
      expect(exit).toBe(0);
      expect(elapsed).toBeLessThan(SHUTDOWN_TIMEOUT_MS + MARGIN_MS);
      const messages = first.logs().map((l) => l.msg);
      expect(messages).toContain('stopped');
      expect(messages).not.toContain(
        'background work still running at the shutdown timeout; leaving it',
      );

      // Back in the queue, free for anyone, and nothing counted against the messages.
      expect([...(await rows())]).toEqual(
        contents.map(() => ({ status: 'pending', claimed: false, failures: 0 })),
      );

      // Another instance takes them at once, long before the lease would have ended.
      provider.mode = 'ok';
      const second = await start(url);
      const deadline = performance.now() + 15_000;
      while ((await rows()).some((r) => r.status !== 'ready')) {
        if (performance.now() > deadline)
          throw new Error('the released messages were not embedded');
        await Bun.sleep(50);
      }
      for (const c of contents) expect(provider.timesEmbedded(c)).toBe(1);
      expect(await second.stop()).toBe(0);
    } finally {
      await sql.end({ timeout: 5 });
    }
  }, 90_000);
});
