// CPU profile of threadstore (from source) under one scenario's load, as Markdown from Bun's
// profiler: where the server's time goes, function by function.
// Usage: bun bench/profile.ts <create|list> [seconds]   (profile lands in bench/results/profile/)
import { join } from 'node:path';
import {
  createTenant,
  freePort,
  load,
  ROOT,
  startInfrastructure,
  startServer,
  cleanup,
  ADMIN_KEY,
  api,
} from './lib';

const scenario = process.argv[2] ?? 'list';
const seconds = Number(process.argv[3] ?? 10);
const dir = join(ROOT, 'bench', 'results', 'profile');
const { pg } = await startInfrastructure();
try {
  const port = freePort();
  const server = await startServer(
    'threadstore',
    [
      join(ROOT, 'node_modules', '.bin', 'bun'),
      '--cpu-prof-md',
      `--cpu-prof-dir=${dir}`,
      `--cpu-prof-name=${scenario}.md`,
      'src/index.ts',
      'serve',
    ],
    {
      DATABASE_URL: pg.url,
      PORT: String(port),
      HOST: '127.0.0.1',
      ADMIN_API_KEY: ADMIN_KEY,
      NODE_ENV: 'production',
      DB_POOL_MAX: '20',
      RATE_LIMIT_WRITE_PER_MINUTE: '100000000',
      RATE_LIMIT_READ_PER_MINUTE: '100000000',
      RETENTION_INTERVAL_MS: '0',
    },
    port,
  );
  const tenant = await createTenant(server.base, 'profile');
  const headers = { authorization: `Bearer ${tenant.api_key}`, 'content-type': 'application/json' };
  for (let i = 0; i < 10; i++) {
    await api(
      server.base,
      'POST',
      '/v1/messages/batch',
      tenant.api_key,
      {
        messages: Array.from({ length: 100 }, (_, j) => ({
          conversation_id: 'list',
          role: 'user',
          content: `message ${i * 100 + j} `.repeat(8),
        })),
      },
      201,
    );
  }
  const opts =
    scenario === 'create'
      ? {
          url: `${server.base}/v1/messages`,
          method: 'POST' as const,
          headers,
          body: JSON.stringify({
            conversation_id: 'one',
            role: 'user',
            content: 'hello '.repeat(20),
          }),
        }
      : { url: `${server.base}/v1/messages?conversation_id=list&limit=50`, headers };
  await load(server, { scenario }, { ...opts, connections: 128, duration: seconds });
  await server.stop();
  process.stderr.write(`profile: ${join(dir, `${scenario}.md`)}\n`);
} finally {
  await cleanup();
}
