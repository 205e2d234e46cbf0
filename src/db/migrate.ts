import type { MigrationMeta } from 'drizzle-orm/migrator';
import { sql } from 'drizzle-orm';
import { embeddedMigrations } from './migrations.macro' with { type: 'macro' };
import { rowsOf } from './raw';
import type { Database, DatabaseHandle } from './types';

/** Advisory lock key for migrations ("threadst" in ASCII), shared by every instance. */
const MIGRATION_LOCK_KEY = 0x7468726561647374n;
const MIGRATIONS_SCHEMA = 'drizzle';
const MIGRATIONS_TABLE = '__drizzle_migrations';

const migrations: MigrationMeta[] = embeddedMigrations();

interface DialectMigrator {
  dialect: {
    migrate(m: MigrationMeta[], session: unknown, config: object): Promise<void>;
  };
  session: unknown;
}

/**
 * Applies pending migrations under an advisory lock, so instances starting together migrate
 * exactly once. Returns how many migrations were pending.
 */
export async function migrate(handle: DatabaseHandle): Promise<number> {
  return handle.withAdvisoryLock(MIGRATION_LOCK_KEY, async (db) => {
    // Counted under the lock: an instance that waited for another one's migration finds none.
    const pending = migrations.length - (await appliedCount(db));
    const { dialect, session } = db as unknown as DialectMigrator;
    await dialect.migrate(migrations, session, {
      migrationsFolder: 'embedded',
      migrationsSchema: MIGRATIONS_SCHEMA,
      migrationsTable: MIGRATIONS_TABLE,
    });
    return Math.max(pending, 0);
  });
}

/** True when every embedded migration has been applied (the readiness probe asks this). */
export async function migrationsApplied(db: Database): Promise<boolean> {
  return (await appliedCount(db)) >= migrations.length;
}

async function appliedCount(db: Database): Promise<number> {
  const table = `${MIGRATIONS_SCHEMA}.${MIGRATIONS_TABLE}`;
  const exists = rowsOf<{ t: string | null }>(
    await db.execute(sql`select to_regclass(${table})::text as t`),
  );
  if (!exists[0]?.t) return 0;
  const rows = rowsOf<{ n: number }>(
    await db.execute(
      sql`select count(*)::int as n from ${sql.identifier(MIGRATIONS_SCHEMA)}.${sql.identifier(MIGRATIONS_TABLE)}`,
    ),
  );
  return Number(rows[0]?.n ?? 0);
}
