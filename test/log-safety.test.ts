// Log lines never carry values: not on an expected refusal, not on an unexpected database error
// (drizzle's message holds the SQL and every bound parameter), and configuration errors never
// echo a secret.
import { afterAll, describe, expect, test } from 'bun:test';
import { sql } from 'drizzle-orm';
import { ConfigError, loadConfig, withoutSecrets } from '../src/config';
import { createLogger, errorSummary, serializeError } from '../src/logger';
import { buildTestApp, LogCapture, sharedApp, type TestApp } from './support/app';

const t = await sharedApp();
const MARKER = `mk${crypto.randomUUID().slice(0, 8)}`;
const apps: TestApp[] = [];

afterAll(async () => {
  for (const app of apps) await app.close();
  await t.db.execute(sql.raw(`drop owned by ts_no_search`)).catch(() => {});
  await t.db.execute(sql.raw(`drop role if exists ts_no_search`)).catch(() => {});
});

/** A real error of the test database for a statement whose bound values hold the marker. */
async function failure(statement: ReturnType<typeof sql>): Promise<Error> {
  try {
    await t.db.execute(statement);
  } catch (err) {
    return err as Error;
  }
  throw new Error('the statement did not fail');
}

describe('the error serializer', () => {
  test('keeps class, SQLSTATE, statement and frames of a drizzle error, and no value', async () => {
    const err = await failure(
      sql`select id from messages where tenant_id = ${MARKER}::uuid and content = ${MARKER}`,
    );
    // What drizzle and postgres.js carry: the marker in the message, the params, the cause.
    expect(err.message).toContain(MARKER);
    expect(JSON.stringify((err as unknown as { params: unknown }).params)).toContain(MARKER);
    const logs = new LogCapture();
    const logger = createLogger('info', logs);
    logger.error({ err }, 'under err');
    logger.error(err);
    logger.warn({ err });
    logger.warn({ error: err, cause: err.cause }, 'under other keys');
    logger.warn({ err: `${MARKER} as a string` }, 'a string');
    expect(logs.raw).toHaveLength(5);
    for (const line of logs.raw) expect(line).not.toContain(MARKER);
    expect(logs.lines[0]!.err).toEqual({
      type: 'DrizzleQueryError',
      statement: 'select messages',
      stack: expect.stringContaining('    at '),
      cause: {
        type: 'PostgresError',
        code: '22P02',
        routine: expect.any(String),
        statement: 'select messages',
        stack: expect.stringContaining('    at '),
      },
    });
    // pino takes the message as `msg` when none is given; here it is the class name.
    expect(logs.lines[1]!.msg).toBe('error (DrizzleQueryError)');
    expect(logs.lines[2]!.msg).toBe('error (DrizzleQueryError)');
    expect(logs.lines[3]!.error).toEqual(logs.lines[0]!.err);
    expect(logs.lines[4]!.err).toEqual({ type: 'string' });
    expect(errorSummary(err)).toBe('DrizzleQueryError: PostgresError 22P02 (select messages)');
  });

  test('drops a message hidden in a stack, and fields that are not names', () => {
    const err = Object.assign(new Error(`line one\n    at ${MARKER} (x.ts:1:2)`), {
      code: `${MARKER} with spaces`,
      constraint_name: 'uq_api_keys_key_hash',
      detail: `Key (key)=(${MARKER}) already exists.`,
      where: MARKER,
      hint: MARKER,
      parameters: [MARKER],
      query: `insert into "api_keys" (key) values ('${MARKER}')`,
    });
    const out = serializeError(err);
    expect(JSON.stringify(out)).not.toContain(MARKER);
    expect(out).toMatchObject({
      type: 'Error',
      constraint: 'uq_api_keys_key_hash',
      statement: 'insert api_keys',
    });
    expect(out.code).toBeUndefined();
    // An error with a field the log censors by name is still written as an error.
    const logs = new LogCapture();
    createLogger('info', logs).error({ err: Object.assign(err, { content: MARKER }) }, 'x');
    expect(logs.raw[0]).not.toContain(MARKER);
    expect(logs.lines[0]!.err).toMatchObject({ type: 'Error', statement: 'insert api_keys' });
  });
});

describe('requests that fail', () => {
  test('an unexpected database error on /v1/search logs no part of the query', async () => {
    // A role that may read everything but the search table: the search statement fails with
    // 42501 after validation, the kind of error the mapping leaves to the 500 path.
    await t.db.execute(
      sql.raw(`do $$ begin
        if not exists (select 1 from pg_roles where rolname = 'ts_no_search') then
          create role ts_no_search login;
        end if;
      end $$`),
    );
    await t.db.execute(
      sql.raw(`grant usage on schema public to ts_no_search;
        grant select, insert, update, delete on all tables in schema public to ts_no_search;
        revoke all on message_search from ts_no_search`),
    );
    const url = new URL(process.env.TEST_DATABASE_URL!);
    url.username = 'ts_no_search';
    const limited = await buildTestApp({ DATABASE_URL: url.toString() }, { setup: false });
    apps.push(limited);
    const { api_key: key } = await t.tenant('no search');
    const requestId = `req-${crypto.randomUUID()}`;
    const res = await limited.call('POST', '/v1/search', {
      key,
      headers: { 'x-request-id': requestId },
      body: {
        query: `words ${MARKER}`,
        conversation_id: MARKER,
        metadata: { [MARKER]: MARKER },
        created_after: '2020-01-01T00:00:00Z',
      },
    });
    expect(res.status).toBe(500);
    expect(res.json.error.code).toBe('internal_error');
    expect(res.text).not.toContain(MARKER);
    await Bun.sleep(5);
    const lines = limited.logs.raw.filter((l) => l.includes(requestId));
    const unhandled = limited.logs.lines.find(
      (l) => l.request_id === requestId && l.msg === 'unhandled error',
    );
    expect(unhandled?.err).toMatchObject({
      type: 'DrizzleQueryError',
      statement: 'select message_search',
      cause: { type: 'PostgresError', code: '42501' },
    });
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const line of limited.logs.raw) expect(line).not.toContain(MARKER);
  });

  test('an unexpected error writing a message logs none of its content or metadata', async () => {
    const { api_key: key } = await t.tenant('log safety');
    // A trigger that fails quoting the content and metadata, as PostgreSQL's messages quote values.
    await t.db.execute(
      sql.raw(`create or replace function test_fail_quoting() returns trigger language plpgsql as $$
        begin if new.content like 'quote-%' then
          raise exception 'refused % %', new.content, new.metadata using detail = new.content;
        end if; return new; end $$`),
    );
    await t.db.execute(sql.raw(`drop trigger if exists test_fail_quoting on messages`));
    await t.db.execute(
      sql.raw(`create trigger test_fail_quoting before insert on messages
        for each row execute function test_fail_quoting()`),
    );
    try {
      const body = {
        conversation_id: 'quoting',
        role: 'user',
        content: `quote-${MARKER}`,
        name: MARKER,
        metadata: { [MARKER]: MARKER },
      };
      const one = await t.call('POST', '/v1/messages', { key, body });
      const batch = await t.call('POST', '/v1/messages/batch', {
        key,
        body: { messages: [body, body] },
      });
      const mcp = await t.call('POST', '/mcp', {
        key,
        headers: { accept: 'application/json, text/event-stream' },
        body: {
          jsonrpc: '2.0',
          id: 1,
          method: 'tools/call',
          params: {
            name: 'add_messages',
            arguments: {
              conversation_id: 'quoting',
              messages: [{ role: body.role, content: body.content, metadata: body.metadata }],
            },
          },
        },
      });
      expect([one.status, batch.status, mcp.status]).toEqual([500, 500, 200]);
      expect(mcp.json.result.isError).toBe(true);
      await Bun.sleep(5);
      const unhandled = t.logs.lines.filter((l) => l.msg === 'unhandled error');
      expect(unhandled.length).toBeGreaterThanOrEqual(3);
      for (const line of t.logs.raw) expect(line).not.toContain(MARKER);
    } finally {
      await t.db.execute(sql.raw(`drop trigger if exists test_fail_quoting on messages`));
    }
  });
});

describe('configuration errors', () => {
  const SECRET = 'S3cretPw9';

  test('name a bad secret or URL without its value', () => {
    let message = '';
    try {
      loadConfig({
        ADMIN_API_KEY: `short${SECRET}`,
        CURSOR_SECRET: SECRET,
        METRICS_TOKEN: `tok${SECRET}`,
        EMBEDDING_API_KEY: `sk-${SECRET}`,
        DATABASE_URL: `mysql://app:${SECRET}@db.internal:3306/app`,
        REDIS_URL: `http://:${SECRET}@cache:6379`,
        EMBEDDING_URL: `ftp://user:${SECRET}@embed`,
        PORT: 'not a port',
      });
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    for (const key of [
      'ADMIN_API_KEY',
      'CURSOR_SECRET',
      'METRICS_TOKEN',
      'DATABASE_URL',
      'REDIS_URL',
      'EMBEDDING_URL',
      'PORT',
    ]) {
      expect(message).toContain(key);
    }
    expect(message).not.toContain(SECRET);
    // Other values are still shown, to help fix them.
    expect(message).toContain('"not a port"');
    expect(message).toContain('starting "mysql://"');
  });

  test('a start-up failure quoting a URL or key has the secrets cut out', () => {
    const env = {
      DATABASE_URL: `postgres://app:${SECRET}%40x@db:5432/app`,
      REDIS_URL: `rediss://default:${SECRET}r@cache:6380`,
      ADMIN_API_KEY: `admin-${SECRET}-0123456789`,
      EMBEDDING_API_KEY: `sk-${SECRET}`,
    };
    const text =
      `could not parse postgres://app:${SECRET}%40x@db:5432/app (password ${SECRET}@x), ` +
      `redis ${env.REDIS_URL}, key ${env.ADMIN_API_KEY}, ${env.EMBEDDING_API_KEY}`;
    const out = withoutSecrets(text, env);
    expect(out).not.toContain(SECRET);
    expect(out).toContain('could not parse postgres://');
  });
});
