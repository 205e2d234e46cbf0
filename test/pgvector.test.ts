// The test PostgreSQL has pgvector with HNSW (installed by .ci/install-pgvector.sh where Debian
// has no package). Checked on a database of its own, so the shared test database keeps only what
// the migrations create.
import { afterAll, beforeAll, expect, test } from 'bun:test';
import postgres from 'postgres';
import { createDatabase } from '../harness/postgres';
import { requirePgvector } from './support/requires';

const describeVector = await requirePgvector();

describeVector('pgvector in the test PostgreSQL', () => {
  let sql: postgres.Sql;

  beforeAll(async () => {
    const url = await createDatabase(
      process.env.TEST_DATABASE_URL!,
      `pgvector_${crypto.randomUUID().replaceAll('-', '')}`,
    );
    sql = postgres(url, { max: 1, onnotice: () => {} });
  });

  afterAll(async () => {
    await sql?.end({ timeout: 5 });
  });

  test('creates the extension and orders rows by cosine distance through an HNSW index', async () => {
    await sql`create extension if not exists vector`;
    const [ext] = await sql`select extversion from pg_extension where extname = 'vector'`;
    expect(ext?.extversion).toMatch(/^\d+\.\d+\.\d+$/);

    await sql`create table items (id int primary key, embedding vector(3) not null)`;
    await sql`create index items_embedding on items using hnsw (embedding vector_cosine_ops)`;
    await sql`insert into items values (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0.9,0.1,0]')`;
    // On three rows the planner prefers a sequential scan; forbid it so the index answers.
    await sql.begin(async (tx) => {
      await tx`set local enable_seqscan = off`;
      const plan = await tx.unsafe(
        `explain select id from items order by embedding <=> '[1,0,0]' limit 2`,
      );
      expect(plan.map((row) => Object.values(row)[0]).join('\n')).toContain('items_embedding');
      const rows = await tx`select id from items order by embedding <=> '[1,0,0]' limit 2`;
      expect(rows.map((row) => row.id)).toEqual([1, 3]);
    });
  });
});
