import { sql } from 'drizzle-orm';
import type { Config } from '../config';
import type { SearchCapabilities } from '../embeddings/types';
import type { Logger } from '../logger';
import { rowsOf } from './raw';
import type { Database, DatabaseHandle } from './types';

/** Advisory lock key for search set-up ("tssearch"), so instances starting together take turns. */
const SEARCH_SETUP_LOCK_KEY = 0x7473736561726368n;
/** Rows changed per statement when search data is rebuilt, so no statement runs for long. */
const REBUILD_BATCH = 5000;
/**
 * Characters of a message's content that full-text search indexes. A tsvector holds at most
 * 1 MB, and measured on PostgreSQL 15 one-letter words of a multibyte script take 6 bytes of
 * tsvector per character (a CJK character and a space: 12 bytes), so content above about
 * 170,000 characters could not be stored at all (SQLSTATE 54000) once MAX_CONTENT_CHARS allows
 * it. Content up to this length is indexed whole; what follows is stored but not searchable.
 */
export const FULLTEXT_INDEXED_CHARS = 100_000;

/** The embedding model and dimension stored vectors were made with. */
interface EmbeddingSetting {
  model: string;
  dimensions: number;
}

/** Raised when the configured embedding model or dimension differs from the stored vectors. */
export class EmbeddingConfigMismatchError extends Error {
  override name = 'EmbeddingConfigMismatchError';
}

/**
 * Brings the search schema in line with the configuration, idempotently, outside the migration
 * transaction: the vector column and its HNSW index (their dimension is configuration, and
 * pgvector may be missing), the language of the full-text vectors, and the trigger that indexes
 * new messages. Returns what search can do.
 */
export async function ensureSearch(
  handle: DatabaseHandle,
  config: Config,
  logger: Logger,
): Promise<SearchCapabilities> {
  return handle.withAdvisoryLock(SEARCH_SETUP_LOCK_KEY, async (db) => {
    const pgvector = await pgvectorVersion(db);
    const caps: SearchCapabilities = {
      language: config.SEARCH_LANGUAGE,
      embeddingsEnabled: !!config.EMBEDDING_URL,
      semantic: false,
      pgvector,
      dimensions: config.EMBEDDING_DIMENSIONS,
    };
    if (!caps.embeddingsEnabled)
      caps.semanticReason = 'embeddings are not configured (EMBEDDING_URL)';
    else if (!pgvector) caps.semanticReason = 'pgvector is not installed on the database server';
    else caps.semantic = true;

    if (caps.semantic) await ensureVectorColumn(db, config);
    await ensureLanguage(db, config.SEARCH_LANGUAGE, logger);
    await defineIndexTrigger(db, config.SEARCH_LANGUAGE, caps.semantic ? 'pending' : 'disabled');
    if (caps.semantic) {
      // Messages stored while embeddings were off get embedded now.
      const queued = await inBatches(
        db,
        sql`update message_search set embedding_status = 'pending'
            where message_id in (select message_id from message_search
              where embedding_status = 'disabled' limit ${REBUILD_BATCH})`,
      );
      if (queued > 0) logger.info({ queued }, 'messages queued for embedding');
    }
    return caps;
  });
}

async function pgvectorVersion(db: Database): Promise<string | undefined> {
  const installed = async () =>
    rowsOf<{ v: string }>(
      await db.execute(sql`select extversion as v from pg_extension where extname = 'vector'`),
    )[0]?.v;
  const version = await installed();
  if (version) return version;
  try {
    await db.execute(sql`create extension if not exists vector`);
  } catch {
    return undefined;
  }
  return installed();
}

async function ensureVectorColumn(db: Database, config: Config): Promise<void> {
  const wanted: EmbeddingSetting = {
    model: config.EMBEDDING_MODEL,
    dimensions: config.EMBEDDING_DIMENSIONS,
  };
  const stored = await readSetting<EmbeddingSetting>(db, 'embedding');
  const column = rowsOf<{ type: string }>(
    await db.execute(sql`select format_type(atttypid, atttypmod) as type from pg_attribute
      where attrelid = 'message_search'::regclass and attname = 'embedding' and not attisdropped`),
  )[0]?.type;
  if (
    (stored && (stored.model !== wanted.model || stored.dimensions !== wanted.dimensions)) ||
    (column && column !== `vector(${wanted.dimensions})`)
  ) {
    throw new EmbeddingConfigMismatchError(
      `Stored embeddings were made with ${stored ? `${stored.model}, ${stored.dimensions} dimensions` : column}, ` +
        `but EMBEDDING_MODEL=${wanted.model} and EMBEDDING_DIMENSIONS=${wanted.dimensions}. ` +
        'Restore the previous settings, or rebuild every embedding with `threadstore embeddings reindex` ' +
        '(or POST /v1/admin/embeddings/reindex on an instance running the new settings).',
    );
  }
  await createVectorColumn(db, wanted);
}

async function createVectorColumn(db: Database, wanted: EmbeddingSetting): Promise<void> {
  await db.execute(
    sql.raw(
      `alter table message_search add column if not exists embedding vector(${wanted.dimensions})`,
    ),
  );
  // Cosine distance, the measure OpenAI-style embeddings are made for.
  await db.execute(
    sql.raw(`create index if not exists ix_message_search_embedding on message_search
      using hnsw (embedding vector_cosine_ops)`),
  );
  await writeSetting(db, 'embedding', wanted);
}

/**
 * Drops every stored vector and rebuilds the column for the configured model and dimension;
 * all messages are queued for embedding again.
 */
export async function reindexEmbeddings(handle: DatabaseHandle, config: Config): Promise<number> {
  return handle.withAdvisoryLock(SEARCH_SETUP_LOCK_KEY, async (db) => {
    await db.execute(sql.raw('drop index if exists ix_message_search_embedding'));
    await db.execute(sql.raw('alter table message_search drop column if exists embedding'));
    await db.execute(sql`delete from app_settings where key = 'embedding'`);
    await createVectorColumn(db, {
      model: config.EMBEDDING_MODEL,
      dimensions: config.EMBEDDING_DIMENSIONS,
    });
    return inBatches(
      db,
      sql`update message_search set embedding_status = 'pending', embedding_error = null,
            lease_until = null, failures = 0, embedded_at = null
          where message_id in (select message_id from message_search
            where embedding_status <> 'pending' or embedded_at is not null limit ${REBUILD_BATCH})`,
    );
  });
}

async function ensureLanguage(db: Database, language: string, logger: Logger): Promise<void> {
  // Fails here, at start-up, with PostgreSQL's own message for an unknown configuration.
  await db.execute(sql`select ${language}::regconfig`);
  const stored = (await readSetting<string>(db, 'search_language')) ?? 'simple';
  if (stored === language) return;
  logger.info({ from: stored, to: language }, 'rebuilding full-text vectors for a new language');
  await writeSetting(db, 'search_language', `rebuilding:${language}`);
  let rebuilt = 0;
  let after = '00000000-0000-0000-0000-000000000000';
  for (;;) {
    const rows = rowsOf<{ id: string }>(
      await db.execute(sql`update message_search s
        set tsv = to_tsvector(${language}::regconfig, left(m.content, ${FULLTEXT_INDEXED_CHARS}))
        from messages m
        where m.id = s.message_id and s.message_id in (
          select message_id from message_search where message_id > ${after}::uuid
          order by message_id limit ${REBUILD_BATCH})
        returning s.message_id as id`),
    );
    if (rows.length === 0) break;
    rebuilt += rows.length;
    after = rows
      .map((r) => r.id)
      .sort()
      .at(-1)!;
  }
  await writeSetting(db, 'search_language', language);
  logger.info({ rebuilt, language }, 'full-text vectors rebuilt');
}

/** The trigger that gives each new message its search row, with the configured values. */
async function defineIndexTrigger(db: Database, language: string, status: string): Promise<void> {
  // Both values are validated (a regconfig that exists, a status from a fixed set): inlining
  // them keeps the per-insert work to one INSERT … SELECT.
  await db.execute(
    sql.raw(`create or replace function threadstore_index_messages() returns trigger
      language plpgsql as $fn$
      begin
        insert into message_search (message_id, tenant_id, tsv, embedding_status)
        select n.id, n.tenant_id,
          to_tsvector('${language}'::regconfig, left(n.content, ${FULLTEXT_INDEXED_CHARS})),
          '${status}'
        from inserted n;
        return null;
      end $fn$`),
  );
}

async function inBatches(db: Database, statement: ReturnType<typeof sql>): Promise<number> {
  let total = 0;
  for (;;) {
    const result = (await db.execute(statement)) as unknown as {
      count?: number;
      affectedRows?: number;
    };
    const changed = Number(result.count ?? result.affectedRows ?? 0);
    total += changed;
    if (changed === 0) return total;
  }
}

async function readSetting<T>(db: Database, key: string): Promise<T | undefined> {
  const rows = rowsOf<{ value: T }>(
    await db.execute(sql`select value from app_settings where key = ${key}`),
  );
  return rows[0]?.value;
}

async function writeSetting(db: Database, key: string, value: unknown): Promise<void> {
  await db.execute(sql`insert into app_settings (key, value) values (${key}, ${JSON.stringify(value)}::jsonb)
    on conflict (key) do update set value = excluded.value, updated_at = now()`);
}
