import { join } from 'node:path';
import { readMigrationFiles, type MigrationMeta } from 'drizzle-orm/migrator';

/**
 * Bun macro: runs at bundle time (and when Bun transpiles the importing file), so the migrations
 * under drizzle/ are inlined into the compiled binary with drizzle's own journal order and hashes.
 * The on-disk folder and the embedded copy are therefore interchangeable.
 */
export function embeddedMigrations(): MigrationMeta[] {
  return readMigrationFiles({ migrationsFolder: join(import.meta.dir, '..', '..', 'drizzle') });
}
