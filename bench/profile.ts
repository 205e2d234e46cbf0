// CPU profile of threadstore (from source) under one scenario's load, as Markdown from Bun's
// profiler: where the server's time goes, function by function.
// Usage: bun bench/profile.ts <create|list> [seconds] [--embeddings] [--baseline]
// (profile lands in bench/results/profile/; --embeddings runs the embedding worker, as the
// paired rounds do; --baseline profiles the framework-free ceiling under the same load instead,
// to set the two side by side)
import { join } from 'node:path';
import {
  api,
  BUN,
  cleanup,
  createTenant,
  jsonAuth,
  load,
  seedListConversation,
  ROOT,
  startBaseline,
  startInfrastructure,
  startThreadstore,
} from './lib';

/** The create scenario's message, into one conversation. */
function createBody() {
  return { conversation_id: 'one', role: 'user', content: 'hello '.repeat(20) };
}

const scenario = process.argv[2] ?? 'list';
const seconds = Number(process.argv.slice(3).find((a) => /^\d+$/.test(a)) ?? 10);
const withEmbeddings = process.argv.includes('--embeddings');
const baseline = process.argv.includes('--baseline');
const profileName = `${baseline ? 'baseline-' : ''}${scenario}.md`;
const dir = join(ROOT, 'bench', 'results', 'profile');
const { pg, embeddings } = await startInfrastructure();
try {
  const profiler = [
    BUN,
    '--cpu-prof-md',
    `--cpu-prof-dir=${dir}`,
    `--cpu-prof-name=${profileName}`,
  ];
  const ts = await startThreadstore(
    pg.url,
    withEmbeddings ? embeddings : null,
    {},
    'threadstore',
    baseline ? undefined : [...profiler, 'src/index.ts', 'serve'],
  );
  const tenant = await createTenant(ts.base, 'profile');
  const headers = jsonAuth(tenant.api_key);
  await seedListConversation(ts.base, tenant);
  // The baseline serves the tenant threadstore created, on the same database; its creates need
  // the conversation to exist.
  if (baseline) {
    await api(ts.base, 'POST', '/v1/messages', tenant.api_key, createBody(), 201);
  }
  const server = baseline
    ? await startBaseline(pg.url, { [tenant.api_key]: tenant.id }, withEmbeddings, [
        ...profiler,
        'bench/baseline/server.ts',
      ])
    : ts;
  const opts =
    scenario === 'create'
      ? {
          url: `${server.base}/v1/messages`,
          method: 'POST' as const,
          headers,
          body: JSON.stringify(createBody()),
        }
      : { url: `${server.base}/v1/messages?conversation_id=list&limit=50`, headers };
  await load(server, { scenario }, { ...opts, connections: 128, duration: seconds });
  await server.stop();
  process.stderr.write(`profile: ${join(dir, profileName)}\n`);
} finally {
  await cleanup();
}
