// CPU profile of threadstore (from source) under one scenario's load, as Markdown from Bun's
// profiler: where the server's time goes, function by function.
// Usage: bun bench/profile.ts <create|list> [seconds] [--embeddings]
// (profile lands in bench/results/profile/; --embeddings runs the embedding worker, as the
// paired rounds do)
import { join } from 'node:path';
import {
  BUN,
  cleanup,
  createTenant,
  jsonAuth,
  load,
  seedListConversation,
  ROOT,
  startInfrastructure,
  startThreadstore,
} from './lib';

const scenario = process.argv[2] ?? 'list';
const seconds = Number(process.argv.slice(3).find((a) => /^\d+$/.test(a)) ?? 10);
const withEmbeddings = process.argv.includes('--embeddings');
const dir = join(ROOT, 'bench', 'results', 'profile');
const { pg, embeddings } = await startInfrastructure();
try {
  const server = await startThreadstore(
    pg.url,
    withEmbeddings ? embeddings : null,
    {},
    'threadstore',
    [
      BUN,
      '--cpu-prof-md',
      `--cpu-prof-dir=${dir}`,
      `--cpu-prof-name=${scenario}.md`,
      'src/index.ts',
      'serve',
    ],
  );
  const tenant = await createTenant(server.base, 'profile');
  const headers = jsonAuth(tenant.api_key);
  await seedListConversation(server.base, tenant);
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
