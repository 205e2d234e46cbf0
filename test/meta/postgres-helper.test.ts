import { afterAll, describe, expect, test } from 'bun:test';
import fs from 'node:fs';
import path from 'node:path';
import postgres from 'postgres';
import {
  createDatabase,
  findPgBin,
  startPostgres,
  type PostgresCluster,
} from '../../harness/postgres';

async function selectOne(url: string): Promise<number> {
  // connect_timeout keeps a dead server from hanging the test until bun's 5 s default.
  const sql = postgres(url, { max: 1, connect_timeout: 3, onnotice: () => {} });
  try {
    const [row] = await sql<{ one: number }[]>`select 1 as one`;
    return row?.one ?? 0;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

describe('harness/postgres', () => {
  let cluster: PostgresCluster | undefined;

  afterAll(async () => {
    await cluster?.stop();
  });

  test('findPgBin resolves a directory holding initdb and pg_ctl', () => {
    const bin = findPgBin();
    expect(bin).not.toBeNull();
    expect(fs.existsSync(path.join(bin!, 'initdb'))).toBe(true);
    expect(fs.existsSync(path.join(bin!, 'pg_ctl'))).toBe(true);
    // A symlink dir such as /usr/local/bin would pair initdb with whatever postgres is on PATH.
    expect(fs.realpathSync(path.join(bin!, 'initdb'))).toBe(path.join(bin!, 'initdb'));
  });

  test('starts, survives SIGKILL + start(), creates databases, and stop() cleans up', async () => {
    cluster = await startPostgres();
    expect(cluster.url).toBe(`postgres://postgres@127.0.0.1:${cluster.port}/postgres`);
    expect(await selectOne(cluster.url)).toBe(1);

    // Hold a connection across the crash so start() has to cope with an orphaned backend.
    const held = postgres(cluster.url, { max: 1, onnotice: () => {} });
    await held`select 1`;

    cluster.kill();
    await expect(selectOne(cluster.url)).rejects.toThrow();

    await cluster.start();
    expect(await selectOne(cluster.url)).toBe(1);
    await held.end({ timeout: 1 }).catch(() => {});

    const dbUrl = await createDatabase(cluster.url, 'helper-test');
    expect(dbUrl).toBe(`postgres://postgres@127.0.0.1:${cluster.port}/helper-test`);
    const sql = postgres(dbUrl, { max: 1, onnotice: () => {} });
    const [row] = await sql<{ db: string }[]>`select current_database() as db`;
    await sql.end();
    expect(row?.db).toBe('helper-test');

    const tmpDir = path.dirname(cluster.dataDir);
    expect(fs.existsSync(tmpDir)).toBe(true);
    await cluster.stop();
    expect(fs.existsSync(tmpDir)).toBe(false);
    cluster = undefined;
  }, 20_000);
});
