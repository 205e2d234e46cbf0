import type { Database } from './types';

const cache = new WeakMap<Database, Map<string, unknown>>();

/**
 * A query built once per database and kept, for the hot read paths. Building a drizzle select
 * (escaping and joining every column, merging fragments) cost more CPU per list request than
 * decoding its rows; a prepared query only fills its placeholders. `key` names the variant:
 * each distinct shape of the query (filters present, sort order) is its own prepared query.
 */
export function preparedOnce<T>(db: Database, key: string, build: () => T): T {
  let byKey = cache.get(db);
  if (!byKey) {
    byKey = new Map();
    cache.set(db, byKey);
  }
  let query = byKey.get(key) as T | undefined;
  if (query === undefined) {
    query = build();
    byKey.set(key, query);
  }
  return query;
}
