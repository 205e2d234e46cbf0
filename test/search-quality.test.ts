// Search quality on a small fixed corpus: for each query, the message it was written for is in
// the top 3, in every mode. Full-text always runs; semantic and hybrid need pgvector and use the
// fake embedding server, whose vectors bring texts sharing (stemmed) content words together.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { loadConfig } from '../src/config';
import { openDatabase } from '../src/db/client';
import { migrate } from '../src/db/migrate';
import { rowsOf } from '../src/db/raw';
import { createLogger } from '../src/logger';
import { buildTestApp, sharedApp, type TestApp } from './support/app';
import { type EmbeddingServer, startEmbeddingServer } from '../harness/embedding-server';
import { createDatabase } from '../harness/postgres';
import { requirePgvector } from './support/requires';

const CORPUS = [
  // refunds
  'When will my refund appear on my credit card?',
  'I requested a refund for the broken headphones last week',
  'Refunds are processed within five business days',
  'Can I get a refund without the original receipt?',
  'The refund amount was wrong, I was charged a restocking fee',
  // shipping
  'My parcel has no tracking number yet',
  'How much does international shipping cost to Canada?',
  'The courier delivered the parcel to the wrong address',
  'Express shipping arrived a day late',
  'Tracking says delivered but nothing arrived',
  // passwords and login
  'The password reset link in the email has expired',
  'I forgot my password and cannot log in',
  'How do I change my password from the mobile app?',
  'Can I use an authenticator app for two factor login?',
  'My account was locked after too many login attempts',
  // weather
  'Will it rain tomorrow in Lisbon?',
  'The forecast says sunny weather all weekend',
  'Strong winds and heavy rain expected on the coast tonight',
  'Is it cold enough for snow in the mountains?',
  'Lisbon had a heatwave last summer',
  // recipes
  'Do you have a recipe for fluffy pancakes?',
  'My tomato soup recipe needs more basil',
  'How long should I bake banana bread?',
  'The pancakes burned because the pan was too hot',
  'A quick pasta recipe with garlic and olive oil',
  // billing and account
  'Please update the billing address on my invoice',
  'Why was I charged twice this month?',
  'Cancel my subscription at the end of the month',
  'The mobile app crashes when I open settings',
  'Send me a copy of last month invoice',
];

/** Query, and the message it should find. */
const QUERIES: [string, string][] = [
  ['refund credit card', 'When will my refund appear on my credit card?'],
  ['parcel tracking number', 'My parcel has no tracking number yet'],
  ['international shipping cost', 'How much does international shipping cost to Canada?'],
  ['password reset link', 'The password reset link in the email has expired'],
  ['authenticator app', 'Can I use an authenticator app for two factor login?'],
  ['rain tomorrow Lisbon', 'Will it rain tomorrow in Lisbon?'],
  ['fluffy pancakes recipe', 'Do you have a recipe for fluffy pancakes?'],
  ['tomato soup basil', 'My tomato soup recipe needs more basil'],
];

const TOP = 3;

async function storeCorpus(app: TestApp) {
  const tenant = await app.tenant('search quality');
  const res = await app.call('POST', '/v1/messages/batch', {
    key: tenant.api_key,
    body: {
      messages: CORPUS.map((content, i) => ({
        conversation_id: `c${i % 4}`,
        role: 'user',
        content,
      })),
    },
  });
  expect(res.status).toBe(201);
  return tenant;
}

function checkQueries(getApp: () => TestApp, getKey: () => string, mode: string) {
  for (const [query, expected] of QUERIES) {
    test(`${mode}: "${query}" finds its message in the top ${TOP}`, async () => {
      const res = await getApp().call('POST', '/v1/search', {
        key: getKey(),
        body: { query, mode, limit: TOP },
      });
      expect(res.status).toBe(200);
      expect(res.json.mode).toBe(mode);
      const top = res.json.results.map((r: { message: { content: string } }) => r.message.content);
      expect(top).toContain(expected);
    });
  }
}

describe('search quality: full-text', () => {
  let t: TestApp;
  let key: string;
  beforeAll(async () => {
    t = await sharedApp();
    key = (await storeCorpus(t)).api_key;
  });
  checkQueries(
    () => t,
    () => key,
    'fulltext',
  );
});

const describeVector = await requirePgvector();

describeVector('search quality: semantic and hybrid', () => {
  let server: EmbeddingServer;
  let t: TestApp;
  let key: string;

  beforeAll(async () => {
    const apiKey = 'quality-embedding-key';
    server = startEmbeddingServer({ dimensions: 64, apiKey });
    const url = await createDatabase(
      process.env.TEST_DATABASE_URL!,
      `search_quality_${crypto.randomUUID().replaceAll('-', '')}`,
    );
    const handle = await openDatabase(
      loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent' }),
      createLogger('silent'),
    );
    await migrate(handle);
    await handle.close();
    t = await buildTestApp(
      {
        DATABASE_URL: url,
        EMBEDDING_URL: server.url,
        EMBEDDING_API_KEY: apiKey,
        EMBEDDING_DIMENSIONS: '64',
        EMBEDDING_MODEL: 'test-model',
      },
      { worker: false },
    );
    expect(t.deps.search.semantic).toBe(true);
    key = (await storeCorpus(t)).api_key;
    // The worker's job, done here at once.
    while ((await t.worker!.runOnce()) > 0) {}
    const ready = rowsOf<{ n: number }>(
      await t.db.execute(
        sql`select count(*)::int as n from message_search where embedding_status = 'ready'`,
      ),
    );
    expect(ready[0]!.n).toBe(CORPUS.length);
  });

  afterAll(async () => {
    await t?.close();
    await server?.stop();
  });

  for (const mode of ['semantic', 'hybrid']) {
    checkQueries(
      () => t,
      () => key,
      mode,
    );
  }
});
